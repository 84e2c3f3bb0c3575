// Command benchstartup measures what koordinator adds to a container's start with an empty spec:
// interleaved runs of /bin/true, an empty Go program (the runtime's floor), `koordinator
// --version` (runtime plus package inits) and `koordinator /bin/true`, timed from fork to reaped
// exit; then the package initialisation of `koordinator --version` package by package
// (GODEBUG=inittrace=1). It prints the section as markdown and, with -doc, writes it to the
// "## Start-up cost" section of docs/performance.md.
//
//	go run ./hack/benchstartup -bin bin/koordinator -n 200 -doc docs/performance.md
package main

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
)

const section = "## Start-up cost"

//go:embed section.md.tmpl
var sectionTemplate string

// Targets (issue 8).
const (
	totalTarget   = 16 * time.Millisecond // koordinator /bin/true − /bin/true
	ownWorkTarget = time.Millisecond      // total − init cost
)

func main() {
	bin := flag.String("bin", "bin/koordinator", "the koordinator binary")
	n := flag.Int("n", 200, "runs of each command")
	initRuns := flag.Int("init-runs", 100, "runs of `koordinator --version` with GODEBUG=inittrace=1")
	doc := flag.String("doc", "", "markdown file whose \""+section+"\" section is written")
	flag.Parse()
	if err := run(*bin, *n, *initRuns, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "benchstartup:", err)
		os.Exit(1)
	}
}

func run(bin string, n, initRuns int, doc string) error {
	if n < 1 || initRuns < 1 {
		return fmt.Errorf("-n and -init-runs must be at least 1")
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	machine := benchdoc.ThisMachine(info.GoVersion)
	// Scratch space in the repo's cache folder: nothing is written outside it.
	if err := os.MkdirAll(".cache", 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(".cache", "benchstartup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	empty, err := filepath.Abs(filepath.Join(tmp, "empty"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", empty, filepath.Join(tmp, "main.go"))
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the empty program: %v\n%s", err, out)
	}

	starts, err := measureStarts(bin, empty, n)
	if err != nil {
		return err
	}
	inits, err := measureInits(bin, initRuns)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	t := template.Must(template.New("section").Parse(sectionTemplate))
	if err := t.Execute(&out, map[string]any{
		"Machine": machine, "Starts": starts, "Inits": inits,
		"TotalTarget": ms(totalTarget), "OwnWorkTarget": ms(ownWorkTarget),
		"TotalVerdict":   verdict(starts.Total <= totalTarget),
		"OwnWorkVerdict": verdict(starts.OwnWork <= ownWorkTarget),
	}); err != nil {
		return err
	}
	fmt.Print(out.String())
	if doc != "" {
		return benchdoc.Replace(doc, section, "## Binary size", out.String())
	}
	return nil
}

// startRow is one command's fork-to-reaped-exit times.
type startRow struct {
	Name        string
	Median, P90 string
}

type startResult struct {
	N                      int
	Rows                   []startRow
	Total, Inits, OwnWork  time.Duration
	TotalMs, InitMs, OwnMs string
}

// measureStarts times the four commands, interleaved, n times each.
func measureStarts(bin, empty string, n int) (startResult, error) {
	cases := []struct {
		name string
		argv []string
	}{
		{"/bin/true", []string{"/bin/true"}},
		{"empty Go program", []string{empty}},
		{"koordinator --version", []string{bin, "--version"}},
		{"koordinator /bin/true", []string{bin, "/bin/true"}},
	}
	env := []string{"PATH=/usr/bin:/bin", "KOORDINATOR_LOG_LEVEL=off"}
	times := make([][]time.Duration, len(cases))
	for range n {
		for c, tc := range cases {
			d, err := timeOne(tc.argv, env)
			if err != nil {
				return startResult{}, fmt.Errorf("%s: %w", tc.name, err)
			}
			times[c] = append(times[c], d)
		}
	}
	r := startResult{N: n}
	med := make([]time.Duration, len(cases))
	for c, tc := range cases {
		slices.Sort(times[c])
		med[c] = times[c][len(times[c])/2]
		r.Rows = append(r.Rows, startRow{tc.name, ms(med[c]), ms(times[c][len(times[c])*9/10])})
	}
	r.Total = med[3] - med[0]
	r.Inits = med[2] - med[1]
	r.OwnWork = med[3] - med[2] - med[0]
	r.TotalMs, r.InitMs, r.OwnMs = ms(r.Total), ms(r.Inits), ms(r.OwnWork)
	return r, nil
}

func timeOne(argv, env []string) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// initPackage is one package's initialisation: medians over the runs.
type initPackage struct {
	Name   string
	Clock  float64 // ms
	Bytes  int
	Allocs int
}

type initGroup struct {
	Name     string
	Packages int
	Clock    string // sum of the packages' medians
	Bytes    string
}

type initResult struct {
	Runs   int
	Total  string // sum of every package's median
	Groups []initGroup
	Top    []initPackage
}

// measureInits runs `koordinator --version` with GODEBUG=inittrace=1 and takes each package's
// median init clock time, in the order the runtime ran them.
func measureInits(bin string, runs int) (initResult, error) {
	clocks := map[string][]float64{}
	last := map[string]initPackage{}
	for range runs {
		cmd := exec.Command(bin, "--version")
		cmd.Env = []string{"GODEBUG=inittrace=1"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return initResult{}, fmt.Errorf("%s --version: %w", bin, err)
		}
		sc := bufio.NewScanner(&stderr)
		for sc.Scan() {
			p, ok := parseInitLine(sc.Text())
			if !ok {
				continue
			}
			clocks[p.Name] = append(clocks[p.Name], p.Clock)
			last[p.Name] = p
		}
	}
	if len(clocks) == 0 {
		return initResult{}, fmt.Errorf("%s --version printed no inittrace lines", bin)
	}
	var pkgs []initPackage
	for name, cs := range clocks {
		slices.Sort(cs)
		p := last[name]
		p.Clock = cs[len(cs)/2]
		pkgs = append(pkgs, p)
	}
	slices.SortFunc(pkgs, func(a, b initPackage) int {
		if a.Clock != b.Clock {
			if a.Clock > b.Clock {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	r := initResult{Runs: runs, Top: pkgs[:min(15, len(pkgs))]}
	groups := map[string]*struct {
		n     int
		clock float64
		bytes int
	}{}
	var total float64
	for _, p := range pkgs {
		g := groups[groupOf(p.Name)]
		if g == nil {
			g = &struct {
				n     int
				clock float64
				bytes int
			}{}
			groups[groupOf(p.Name)] = g
		}
		g.n++
		g.clock += p.Clock
		g.bytes += p.Bytes
		total += p.Clock
	}
	for _, name := range groupOrder {
		if g := groups[name]; g != nil {
			r.Groups = append(r.Groups, initGroup{name, g.n, fmt.Sprintf("%.2f ms", g.clock), fmt.Sprintf("%d kB", g.bytes/1024)})
		}
	}
	r.Total = fmt.Sprintf("%.2f ms", total)
	return r, nil
}

var groupOrder = []string{
	"Go runtime and standard library",
	"Kubernetes client (k8s.io, sigs.k8s.io) and its dependencies",
	"zap and the klog bridge",
	"koordinator",
}

// groupOf says where a package comes from.
func groupOf(pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	switch {
	case strings.HasPrefix(pkg, "github.com/koordinator-dev/"):
		return groupOrder[3]
	case strings.HasPrefix(pkg, "go.uber.org/"), strings.HasPrefix(pkg, "github.com/go-logr/"):
		return groupOrder[2]
	case !strings.Contains(first, "."):
		return groupOrder[0]
	}
	return groupOrder[1]
}

// parseInitLine reads "init PKG @T ms, C ms clock, B bytes, A allocs".
func parseInitLine(line string) (initPackage, bool) {
	f := strings.Fields(line)
	if len(f) != 11 || f[0] != "init" || f[6] != "clock," {
		return initPackage{}, false
	}
	clock, err1 := strconv.ParseFloat(f[4], 64)
	bytes, err2 := strconv.Atoi(f[7])
	allocs, err3 := strconv.Atoi(f[9])
	if err1 != nil || err2 != nil || err3 != nil {
		return initPackage{}, false
	}
	name := strings.ReplaceAll(f[1], "%2e", ".") // the runtime prints gopkg.in/inf.v0 path-escaped
	return initPackage{Name: name, Clock: clock, Bytes: bytes, Allocs: allocs}, true
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
