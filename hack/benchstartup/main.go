// Command benchstartup measures what koordinator adds to a container's start with an empty spec:
// interleaved runs of /bin/true, an empty Go program (the runtime's floor), `koordinator
// --version` (runtime plus package inits) and `koordinator /bin/true`, timed from fork to reaped
// exit. It prints a markdown table of medians and p90s.
//
//	go run ./hack/benchstartup -bin bin/koordinator -n 200
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/koordinator", "the koordinator binary")
	n := flag.Int("n", 200, "runs of each command")
	flag.Parse()
	if err := run(*bin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "benchstartup:", err)
		os.Exit(1)
	}
}

func run(bin string, n int) error {
	tmp, err := os.MkdirTemp("", "benchstartup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	empty := filepath.Join(tmp, "empty")
	if err := os.WriteFile(filepath.Join(tmp, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", empty, filepath.Join(tmp, "main.go"))
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the empty program: %v\n%s", err, out)
	}

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
	for i := 0; i < n; i++ {
		for c, tc := range cases {
			d, err := timeOne(tc.argv, env)
			if err != nil {
				return fmt.Errorf("%s: %w", tc.name, err)
			}
			times[c] = append(times[c], d)
		}
	}
	med := make([]time.Duration, len(cases))
	fmt.Printf("| command (%d interleaved runs each) | median | p90 |\n|---|---|---|\n", n)
	for c, tc := range cases {
		slices.Sort(times[c])
		med[c] = times[c][len(times[c])/2]
		fmt.Printf("| %s | %s | %s |\n", tc.name, ms(med[c]), ms(times[c][len(times[c])*9/10]))
	}
	wrapper := med[3] - med[2] - med[0]
	fmt.Printf("| **total added** (`koordinator /bin/true` − `/bin/true`) | %s | |\n", ms(med[3]-med[0]))
	fmt.Printf("| **runtime + package inits** (`--version` − empty Go program) | %s | |\n", ms(med[2]-med[1]))
	fmt.Printf("| **wrapper's own work** (`koordinator /bin/true` − `--version` − `/bin/true`) | %s | |\n", ms(wrapper))
	return nil
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

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
