// Command benchreaction measures koordinator's stop reaction: how soon a sidecar's child gets
// its stop signal once its stop dependency has exited, with the real binary against a real local
// control plane (test/testenv). In one run it alternates, n times each:
//
//   - channel: wrappers "proxy" ({"name":"proxy","stopDeps":["main"]}) and "main" ({"name":"main"})
//     run from one folder (the pod's emptyDir) and tell each other through the pod-local channel.
//     Main's child records the time just before it exits; proxy's child records the time it
//     receives SIGTERM. Nothing writes the API after the pod's start.
//   - API: proxy alone, with KOORDINATOR_LOCAL_STATE=off; the benchmark writes main
//     `terminated` (exit 0) through the status subresource, the time taken just before the
//     request. In the same run a plain client-go watch in this process times the same write
//     (request start → event received): the floor.
//   - instrument: the same helpers without koordinator: the exit helper's exit as seen by this
//     process's own wait, and SIGTERM sent by this process straight to the term helper. What the
//     channel reaction has beyond these two is koordinator's.
//
// Every run gets a fresh pod (bound to a node that does not exist, so nothing else touches it;
// restartPolicy Never; status written as a kubelet would: both containers running). Every time is
// time.Now().UnixNano(), the host's wall clock, on one machine. The wrappers authenticate as in a
// pod, with a ServiceAccount token (token.go); the benchmark's own client is the admin one. It
// prints a markdown table of p50 and p99 and, with -doc, writes it to the "## Stop reaction"
// section of docs/performance.md.
//
// Against the same control plane it then measures what a wrapper costs before and while it waits
// (idle.go): cold start with every start dependency Ready (-cold runs, beside a plain list of the
// pod as the floor), time to the pod's first state, VmRSS of idle wrappers and the API server's
// pod requests and watches over -idle with -idle-wrappers watching; with -doc, written to the
// "## Cold start and idle cost" section.
//
// The start reaction (start.go, right after the stop reaction, n runs): a fresh wrapper
// {"name":"proxy","startDeps":["main"]} waits on a fresh pod whose main runs but is not Ready; the
// benchmark writes main Ready (the time taken just before the request) and times the wrapper's
// child's first instruction, beside a plain client-go watch that sees the same write; with -doc,
// the "## Start reaction" section.
//
// Last, the scale run (scale.go): -scale-pods pods with two wrappers each (proxy with stopDeps
// [main] and main with startDeps [proxy], both with a running child, from the pod's own folder) idle for -scale-idle;
// their summed RSS, the API server's and etcd's CPU-seconds over that window, and -scale-runs
// start reactions while they run; with -doc, the "## Scale" section.
//
//	go run ./hack/benchreaction -bin bin/koordinator -n 200 -doc docs/performance.md
package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
	podwatch "github.com/koordinator-dev/koordinator/internal/watch"
	"github.com/koordinator-dev/koordinator/test/podstatus"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

const (
	namespace = "default" // has its ServiceAccount once testenv.Start returns
	waitLimit = 30 * time.Second
	section   = "## Stop reaction"
)

// steadyAfter is how long after its child started (or, waiting, after its first pod state) a
// wrapper is triggered: past its release of start-up memory (1 s after either), so that a
// reaction is timed in the state a real stop or start finds it in, with the pages the release
// unmapped faulting back in.
const steadyAfter = 1200 * time.Millisecond

func main() {
	bin := flag.String("bin", "bin/koordinator", "the koordinator binary")
	n := flag.Int("n", 200, "runs of each setup")
	settle := flag.Duration("settle", steadyAfter, "idle time between both wrappers being ready and the trigger")
	doc := flag.String("doc", "", "markdown file whose \""+section+"\" section is written (created or replaced)")
	timeout := flag.Duration("timeout", 60*time.Minute, "bound on the whole benchmark")
	reaction := flag.Bool("reaction", true, "measure the stop and start reactions (false: only the cold start, idle cost and scale)")
	var opts idleOptions
	flag.IntVar(&opts.coldRuns, "cold", 100, "cold starts (0: no cold start and idle cost)")
	flag.IntVar(&opts.wrappers, "idle-wrappers", 10, "idle wrappers (half waiting for a start dependency, half with a running child)")
	flag.DurationVar(&opts.rssAfter, "rss-after", time.Minute, "idle time after sync before VmRSS is read")
	flag.DurationVar(&opts.idle, "idle", 5*time.Minute, "idle time after sync over which the API requests are counted")
	var scale scaleOptions
	flag.IntVar(&scale.pods, "scale-pods", 100, "pods of the scale run, two wrappers each (0: no scale run)")
	flag.DurationVar(&scale.idle, "scale-idle", 5*time.Minute, "idle time of the scale run's wrappers over which RSS, CPU and requests are taken")
	flag.IntVar(&scale.runs, "scale-runs", 100, "start reactions while the scale run's wrappers watch")
	flag.Var(&variants, "variant", "an A/B run instead of the sections: NAME[:KEY=VALUE,...], repeated; -n rounds, -idle-wrappers, -rss-after and -idle for the memory")
	flag.BoolVar(&verbose, "v", false, "print each run's figures and the wrappers' logs")
	flag.StringVar(&logLevel, "log-level", "", "KOORDINATOR_LOG_LEVEL for the wrappers (for diagnosis; the figures are taken at the default, info)")
	flag.Parse()
	if err := run(*bin, *n, *settle, *doc, *timeout, *reaction, opts, scale); err != nil {
		fmt.Fprintln(os.Stderr, "benchreaction:", err)
		os.Exit(1)
	}
}

var (
	verbose  bool
	logLevel string
	variants variantFlag
)

type bench struct {
	client     kubernetes.Interface // the admin client: pods, status writes, /metrics
	floor      kubernetes.Interface // the admin client in protobuf, as the wrappers read: the floors' watches and lists
	kubeconfig string               // the wrappers': a ServiceAccount token, as in a pod (token.go)
	goVersion  string               // of the binary measured
	tmp        string
	helper     string
	chBin      string // koordinator in the channel setup's emptyDir
	apiBin     string // koordinator in the API setup's emptyDir
	settle     time.Duration
	cp         *testenv.ControlPlane
	mc         *memcg   // the benchmark's memory cgroup; nil where the machine does not allow one
	noMemcg    string   // why mc is nil
	extraEnv   []string // added to every wrapper's environment (A/B runs)

	startP99      time.Duration // the single wrapper's start reaction p99; 0 if not measured
	idleCPUPerMin float64       // the API server's CPU-seconds per minute with the idle wrappers; -1 if not measured
	idleWrappers  int
}

func run(bin string, n int, settle time.Duration, doc string, timeout time.Duration, reaction bool, opts idleOptions, scale scaleOptions) error {
	if n < 1 {
		return errors.New("-n must be at least 1")
	}
	if opts.coldRuns > 0 && (opts.wrappers < 2 || opts.idle < opts.rssAfter) {
		return errors.New("-idle-wrappers must be at least 2 and -idle at least -rss-after")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	goVersion := info.GoVersion
	machine := benchdoc.ThisMachine(goVersion) // the stop reaction's: its load average before the set-up
	// The real folder: --install refuses to write through a symlink, and .cache may be one (a
	// git worktree sharing another's cache).
	cache, err := filepath.EvalSymlinks(filepath.Join(root, ".cache"))
	if err != nil {
		return err
	}
	removeStale(cache)
	tmp, err := os.MkdirTemp(cache, "benchreaction-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}

	b := &bench{tmp: tmp, settle: settle, helper: filepath.Join(tmp, "helper"), goVersion: goVersion, idleCPUPerMin: -1}
	build := exec.Command("go", "build", "-trimpath", "-o", b.helper, "./hack/benchreaction/helper")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the helper: %v\n%s", err, out)
	}
	// Every setup installs from one copy taken now: a `make build` while the benchmark runs would
	// otherwise mix two binaries in one run.
	if bin, err = install(bin, filepath.Join(tmp, "under-test")); err != nil {
		return err
	}
	if info, err = buildinfo.ReadFile(bin); err != nil || info.GoVersion != goVersion {
		return fmt.Errorf("the binary changed while it was being copied (%v); run again", err)
	}
	if b.chBin, err = install(bin, filepath.Join(tmp, "emptydir-channel")); err != nil {
		return err
	}
	if b.apiBin, err = install(bin, filepath.Join(tmp, "emptydir-api")); err != nil {
		return err
	}

	if b.mc, b.noMemcg = newMemcg(); b.mc == nil {
		fmt.Fprintf(os.Stderr, "benchreaction: no memory cgroups (%s): the working sets are estimates\n", b.noMemcg)
	}
	defer func() {
		if err := b.mc.close(); err != nil {
			fmt.Fprintln(os.Stderr, "benchreaction:", err)
		}
	}()

	began := time.Now()
	// The control plane's run folder goes under the benchmark's own: a shared .cache/run is
	// swept by every other testenv start, which cannot always see this process (another PID
	// namespace) and would take its folder for a dead run's.
	cp, err := testenv.Start(ctx, testenv.Options{CacheDir: tmp})
	if err != nil {
		return err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "benchreaction: stopping the control plane:", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "benchreaction: control plane up in %s\n", time.Since(began).Round(time.Millisecond))
	rc := cp.RESTConfig()
	rc.QPS = -1 // no client-side throttling on the timed request
	if b.client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	fc := rest.CopyConfig(rc)
	podwatch.PreferProtobuf(fc)
	if b.floor, err = kubernetes.NewForConfig(fc); err != nil {
		return err
	}
	b.cp = cp
	if b.kubeconfig, err = b.tokenKubeconfig(ctx, rc); err != nil {
		return fmt.Errorf("the wrappers' ServiceAccount token: %w", err)
	}

	if len(variants) > 0 {
		return b.abRun(ctx, bin, variants, n, opts)
	}
	if reaction {
		if err := b.reaction(ctx, n, doc, machine); err != nil {
			return err
		}
		if err := b.startReaction(ctx, bin, n, doc); err != nil {
			return err
		}
	}
	if opts.coldRuns > 0 {
		if err := b.idleCost(ctx, bin, opts, doc); err != nil {
			return err
		}
	}
	if scale.pods > 0 {
		return b.scale(ctx, bin, scale, doc)
	}
	return nil
}

// reaction measures the stop reaction and writes its section.
func (b *bench) reaction(ctx context.Context, n int, doc string, machine benchdoc.Machine) error {
	var channel, api, floors []sample
	began := time.Now()
	fmt.Fprintf(os.Stderr, "benchreaction: stop reaction, %d runs of each setup\n", n)
	for i := range n {
		f, err := b.floorRun(ctx)
		if err != nil {
			return fmt.Errorf("instrument floor run %d: %w", i, err)
		}
		floors = append(floors, f)
		for k := range 2 {
			if (i+k)%2 == 0 {
				s, err := b.channelRun(ctx, i)
				if err != nil {
					return fmt.Errorf("channel run %d: %w", i, err)
				}
				channel = append(channel, s)
				continue
			}
			s, err := b.apiRun(ctx, i)
			if err != nil {
				return fmt.Errorf("API run %d: %w", i, err)
			}
			api = append(api, s)
		}
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d rounds (channel, API, instrument) in %s\n", n, time.Since(began).Round(time.Millisecond))

	return report(doc, section, "", sectionTemplate, makeTable(n, channel, api, floors), machine,
		map[string]any{"N": n, "Settle": b.settle})
}

// report prints a section's table and, with doc, writes the section there: tmpl executed with
// data, the table and the machine, in place of the section headed heading (a new one goes right
// after the section headed after, when given).
func report(doc, heading, after, tmpl, table string, machine benchdoc.Machine, data map[string]any) error {
	fmt.Print(table)
	if doc == "" {
		return nil
	}
	data["Table"], data["Machine"] = table, machine
	var text strings.Builder
	if err := template.Must(template.New(heading).Parse(tmpl)).Execute(&text, data); err != nil {
		return err
	}
	if err := benchdoc.Replace(doc, heading, after, text.String()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: wrote %q in %s\n", heading, doc)
	return nil
}

// sectionTemplate is the "## Stop reaction" section of docs/performance.md.
//
//go:embed section.md.tmpl
var sectionTemplate string

// ownerFile in the benchmark's folder holds the pid of the benchmark that made it.
const ownerFile = "owner.pid"

// removeStale removes the folders of benchmarks that died without cleaning up (SIGKILL); their
// processes died with them (Pdeathsig).
func removeStale(cache string) {
	dirs, _ := filepath.Glob(filepath.Join(cache, "benchreaction-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(d)
		}
	}
}

// install copies the binary into a fresh folder, as the init container does into the emptyDir.
func install(bin, dir string) (string, error) { return (*bench)(nil).installIn(bin, dir, "") }

// installIn is install run in the cgroup cg ("": this process's), so that the copy's page cache
// is charged there.
func (b *bench) installIn(bin, dir, cg string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// As the init container does. How the copy is written decides how the page cache holds it
	// (one 15 MB write leaves 2 MB folios, which a fault maps whole), and with that the
	// wrapper's resident set.
	argv := []string{bin, "--install", dir}
	if cg != "" {
		argv = b.cgexec(cg, argv)
	}
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s --install %s: %v: %s", bin, dir, err, out)
	}
	return filepath.Join(dir, "koordinator"), nil
}

// --- the setups -----------------------------------------------------------------------------

// sample is one run's figures. The parts in between come from the wrappers' own log lines (zap
// takes the time when the line is logged).
type sample struct {
	reaction time.Duration // trigger → proxy's child has SIGTERM
	floor    time.Duration // API only: trigger → the benchmark's watch has the event
	reaped   time.Duration // channel only: main's child exits → main's wrapper logs "child exited"
	decided  time.Duration // trigger → proxy's wrapper logs "stop dependencies exited"
	signaled time.Duration // that line → proxy's child has SIGTERM
}

// channelRun is one stop through the pod-local channel: proxy's SIGTERM time − main's exit time.
func (b *bench) channelRun(ctx context.Context, i int) (sample, error) {
	var none sample
	name := fmt.Sprintf("channel-%d", i)
	if _, err := b.newPod(ctx, name); err != nil {
		return none, err
	}
	defer b.deletePod(name)
	if err := os.RemoveAll(filepath.Join(filepath.Dir(b.chBin), ".state")); err != nil {
		return none, err
	}
	termFile, exitFile := filepath.Join(b.tmp, "proxy-term"), filepath.Join(b.tmp, "main-exit")
	if err := removeFiles(termFile, exitFile); err != nil {
		return none, err
	}

	proxy, err := b.start("proxy", b.env(name, `{"name":"proxy","stopDeps":["main"]}`, false),
		[]string{b.chBin, b.helper, "term", termFile}, false)
	if err != nil {
		return none, err
	}
	defer proxy.kill()
	if err := proxy.waitReady(ctx); err != nil {
		return none, err
	}
	main, err := b.start("main", b.env(name, `{"name":"main"}`, false),
		[]string{b.chBin, b.helper, "exit", exitFile}, true)
	if err != nil {
		return none, err
	}
	defer main.kill()
	if err := main.waitReady(ctx); err != nil {
		return none, err
	}
	if err := sleep(ctx, b.settle); err != nil {
		return none, err
	}

	main.stdin.Close() // main's child takes the time and exits
	if err := proxy.waitExit(ctx); err != nil {
		return none, err
	}
	if err := main.waitExit(ctx); err != nil {
		return none, err
	}
	if !strings.Contains(proxy.output(), `"fromStateFiles":["main"]`) {
		return none, fmt.Errorf("proxy did not stop because of main's state file; its log:\n%s", proxy.output())
	}
	exited, err := readStamp(exitFile)
	if err != nil {
		return none, err
	}
	termed, err := readStamp(termFile)
	if err != nil {
		return none, fmt.Errorf("%w; proxy's log:\n%s", err, proxy.output())
	}
	reaped, err := logTime(main.output(), "child exited")
	if err != nil {
		return none, err
	}
	decided, err := logTime(proxy.output(), "stop dependencies exited")
	if err != nil {
		return none, err
	}
	s := sample{reaction: time.Duration(termed - exited), reaped: time.Duration(reaped - exited),
		decided: time.Duration(decided - exited), signaled: time.Duration(termed - decided)}
	if verbose {
		fmt.Fprintf(os.Stderr, "--- %s: %+v\nmain:\n%sproxy:\n%s", name, s, main.output(), proxy.output())
	}
	return s, nil
}

// apiRun is one stop through the API only: proxy's SIGTERM time − the time before the status
// write, and the floor: the event's arrival at a plain watch − the same time.
func (b *bench) apiRun(ctx context.Context, i int) (sample, error) {
	var none sample
	name := fmt.Sprintf("api-%d", i)
	pod, err := b.newPod(ctx, name)
	if err != nil {
		return none, err
	}
	defer b.deletePod(name)
	termFile := filepath.Join(b.tmp, "proxy-term")
	if err := removeFiles(termFile); err != nil {
		return none, err
	}

	proxy, err := b.start("proxy", b.env(name, `{"name":"proxy","stopDeps":["main"]}`, true),
		[]string{b.apiBin, b.helper, "term", termFile}, false)
	if err != nil {
		return none, err
	}
	defer proxy.kill()
	if err := proxy.waitReady(ctx); err != nil {
		return none, err
	}

	w, err := b.watchPod(ctx, pod, mainTerminated, "main's termination")
	if err != nil {
		return none, err
	}
	defer w.stop()
	if err := sleep(ctx, b.settle); err != nil {
		return none, err
	}

	_, written, err := b.writeMain(ctx, pod, podstatus.Terminated(0))
	if err != nil {
		return none, err
	}
	eventAt, err := w.seen(ctx)
	if err != nil {
		return none, err
	}
	if err := proxy.waitExit(ctx); err != nil {
		return none, err
	}
	if out := proxy.output(); !strings.Contains(out, `"msg":"stop dependencies exited"`) || strings.Contains(out, `"fromStateFiles":["`) {
		return none, fmt.Errorf("proxy did not stop because of the API; its log:\n%s", out)
	}
	termed, err := readStamp(termFile)
	if err != nil {
		return none, fmt.Errorf("%w; proxy's log:\n%s", err, proxy.output())
	}
	decided, err := logTime(proxy.output(), "stop dependencies exited")
	if err != nil {
		return none, err
	}
	s := sample{reaction: time.Duration(termed - written), floor: time.Duration(eventAt - written),
		decided: time.Duration(decided - written), signaled: time.Duration(termed - decided)}
	if verbose {
		fmt.Fprintf(os.Stderr, "--- %s: %+v\nproxy:\n%s", name, s, proxy.output())
	}
	return s, nil
}

// floorRun times the instrument without koordinator: the exit helper's exit as seen by a plain
// parent (its time → the benchmark's Wait returns) and SIGTERM from a plain parent to the term
// helper (just before kill(2) → its time).
func (b *bench) floorRun(ctx context.Context) (sample, error) {
	var none sample
	termFile, exitFile := filepath.Join(b.tmp, "floor-term"), filepath.Join(b.tmp, "floor-exit")
	ex, err := b.start("exit helper", []string{"PATH=/usr/bin:/bin"}, []string{b.helper, "exit", exitFile}, true)
	if err != nil {
		return none, err
	}
	ex.direct = true
	defer ex.kill()
	tm, err := b.start("term helper", []string{"PATH=/usr/bin:/bin"}, []string{b.helper, "term", termFile}, false)
	if err != nil {
		return none, err
	}
	tm.direct = true
	defer tm.kill()
	for _, p := range []*proc{ex, tm} {
		if err := p.waitReady(ctx); err != nil {
			return none, err
		}
	}
	if err := sleep(ctx, b.settle); err != nil {
		return none, err
	}

	ex.stdin.Close()
	if err := ex.waitExit(ctx); err != nil {
		return none, err
	}
	exited, err := readStamp(exitFile)
	if err != nil {
		return none, err
	}
	if err := sleep(ctx, b.settle); err != nil {
		return none, err
	}
	sent := time.Now().UnixNano()
	if err := tm.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return none, err
	}
	if err := tm.waitExit(ctx); err != nil {
		return none, err
	}
	termed, err := readStamp(termFile)
	if err != nil {
		return none, err
	}
	return sample{reaped: time.Duration(ex.waitedAt - exited), signaled: time.Duration(termed - sent)}, nil
}

func (b *bench) env(pod, spec string, localOff bool) []string {
	env := []string{
		"PATH=/usr/bin:/bin",
		"KUBECONFIG=" + b.kubeconfig,
		"KOORDINATOR_POD_NAME=" + pod,
		"KOORDINATOR_POD_NAMESPACE=" + namespace,
		"KOORDINATOR_SPEC=" + spec,
	}
	if localOff {
		env = append(env, "KOORDINATOR_LOCAL_STATE=off")
	}
	if logLevel != "" {
		env = append(env, "KOORDINATOR_LOG_LEVEL="+logLevel)
	}
	return append(env, b.extraEnv...)
}

// --- the pod --------------------------------------------------------------------------------

// newPod creates the pod and writes its status as a kubelet would once both containers run.
func (b *bench) newPod(ctx context.Context, name string) (*corev1.Pod, error) {
	grace := int64(30)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:                      "no-such-node", // bound, so no scheduler or kubelet touches it
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{
				{Name: "main", Image: "busybox", Command: []string{"/koordinator/koordinator", "helper", "exit"}},
				{Name: "proxy", Image: "busybox", Command: []string{"/koordinator/koordinator", "helper", "term"}},
			},
		},
	}
	pod, err := b.client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	// The API keeps whole seconds: truncating keeps startedAt from being later than main's exit,
	// which would make its state file look stale.
	started := metav1.NewTime(time.Now().Truncate(time.Second))
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started}
	for _, c := range []string{"main", "proxy"} {
		yes := true
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, Image: "busybox", Started: &yes, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	return b.client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

// writeMain changes main's status in pod as change does and writes it through the status
// subresource (one UpdateStatus); written is the time (Unix ns) taken just before the request.
func (b *bench) writeMain(ctx context.Context, pod *corev1.Pod, change func(*corev1.ContainerStatus)) (_ *corev1.Pod, written int64, err error) {
	podstatus.Set(&pod.Status, "main", change)
	written = time.Now().UnixNano()
	pod, err = b.client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	return pod, written, err
}

// podWatch is a plain client-go watch of one pod in this process: the floor of a reaction.
type podWatch struct {
	w    watch.Interface
	at   chan int64 // when the first event in which the condition holds arrived (Unix ns)
	what string
}

// watchPod opens a plain client-go watch of pod (typed clientset, protobuf and a field selector
// on its name like koordinator's) from its resourceVersion, for the first event in which cond holds.
func (b *bench) watchPod(ctx context.Context, pod *corev1.Pod, cond func(*corev1.Pod) bool, what string) (*podWatch, error) {
	w, err := b.floor.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", pod.Name).String(),
		ResourceVersion: pod.ResourceVersion,
	})
	if err != nil {
		return nil, err
	}
	pw := &podWatch{w: w, at: make(chan int64, 1), what: what}
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && cond(p) {
				pw.at <- time.Now().UnixNano()
				return
			}
		}
	}()
	return pw, nil
}

// seen waits for the event and returns when it arrived (Unix ns).
func (pw *podWatch) seen(ctx context.Context) (int64, error) {
	select {
	case at := <-pw.at:
		return at, nil
	case <-time.After(waitLimit):
		return 0, fmt.Errorf("the watch never delivered %s", pw.what)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (pw *podWatch) stop() { pw.w.Stop() }

func (b *bench) deletePod(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	zero := int64(0)
	_ = b.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

func mainTerminated(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "main" && s.State.Terminated != nil {
			return true
		}
	}
	return false
}

// --- wrappers as real processes -------------------------------------------------------------

// spawnCh serves Start on one goroutine locked to its thread: Pdeathsig fires when the thread
// that forked exits (golang/go#27505), so it means "the benchmark died", nothing else.
var spawnCh = make(chan spawnRequest)

type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan spawnReply
}

// spawnReply is Start's error and the time (Unix ns) taken just before it: the process's start.
type spawnReply struct {
	err error
	at  int64
}

func init() {
	go func() {
		runtime.LockOSThread()
		for req := range spawnCh {
			at := time.Now().UnixNano()
			req.reply <- spawnReply{err: req.cmd.Start(), at: at}
		}
	}()
}

// proc is one koordinator process; its stdout and stderr (its log and its child's "ready") are
// read into one buffer.
type proc struct {
	name      string
	cmd       *exec.Cmd
	stdin     *os.File // the write end of the child's stdin, when asked for
	changed   chan struct{}
	done      chan struct{} // closed once Wait returned
	mu        sync.Mutex
	out       bytes.Buffer
	childPid  int
	direct    bool  // a helper started by the benchmark itself, without koordinator
	startedAt int64 // just before fork and exec (Unix ns)
	waitedAt  int64 // when Wait returned (Unix ns); valid once done is closed
}

func (b *bench) start(name string, env, argv []string, withStdin bool) (*proc, error) {
	p := &proc{name: name, changed: make(chan struct{}, 1), done: make(chan struct{})}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdinR *os.File
	if withStdin {
		if stdinR, p.stdin, err = os.Pipe(); err != nil {
			r.Close()
			w.Close()
			return nil, err
		}
		p.cmd.Stdin = stdinR
	}
	reply := make(chan spawnReply, 1)
	spawnCh <- spawnRequest{cmd: p.cmd, reply: reply}
	rep := <-reply
	err, p.startedAt = rep.err, rep.at
	w.Close()
	if stdinR != nil {
		stdinR.Close()
	}
	if err != nil {
		r.Close()
		if p.stdin != nil {
			p.stdin.Close()
		}
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		defer r.Close()
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				p.mu.Lock()
				p.out.Write(buf[:n])
				p.mu.Unlock()
				select {
				case p.changed <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		p.waitedAt = time.Now().UnixNano()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

var childStarted = regexp.MustCompile(`"msg":"child started".*"pid":(\d+)`)

// waitReady waits for "child started" in the wrapper's log and "ready" from its child.
func (p *proc) waitReady(ctx context.Context) error {
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		out := p.output()
		if m := childStarted.FindStringSubmatch(out); m != nil || p.direct {
			if m != nil {
				p.childPid, _ = strconv.Atoi(m[1])
			}
			if slices.Contains(strings.Split(out, "\n"), "ready") {
				return nil
			}
		}
		select {
		case <-p.changed:
		case <-p.done:
			time.Sleep(10 * time.Millisecond) // let the reader take the last output
			return fmt.Errorf("%s exited before its child was ready (%s); its log:\n%s", p.name, p.cmd.ProcessState, p.output())
		case <-limit.C:
			return fmt.Errorf("%s's child not ready within %s; its log:\n%s", p.name, waitLimit, p.output())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *proc) waitExit(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-time.After(waitLimit):
		return fmt.Errorf("%s did not exit within %s; its log:\n%s", p.name, waitLimit, p.output())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// kill ends the wrapper and its child's process group if they still run, and waits for the
// wrapper. On the normal path both have exited and this does nothing.
func (p *proc) kill() {
	if p.stdin != nil {
		p.stdin.Close()
	}
	select {
	case <-p.done:
		return
	default:
	}
	if p.childPid > 0 && !p.direct {
		_ = syscall.Kill(-p.childPid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		fmt.Fprintf(os.Stderr, "benchreaction: %s (pid %d) did not die\n", p.name, p.cmd.Process.Pid)
	}
}

// --- figures --------------------------------------------------------------------------------

func makeTable(n int, channel, api, floors []sample) string {
	get := func(ss []sample, f func(sample) time.Duration) []time.Duration {
		d := make([]time.Duration, len(ss))
		for i, s := range ss {
			d[i] = f(s)
		}
		return d
	}
	reaction := func(s sample) time.Duration { return s.reaction }
	ch, ap := get(channel, reaction), get(api, reaction)
	fl := get(api, func(s sample) time.Duration { return s.floor })
	diff := get(api, func(s sample) time.Duration { return s.reaction - s.floor })
	exitFloor := get(floors, func(s sample) time.Duration { return s.reaped })
	sigFloor := get(floors, func(s sample) time.Duration { return s.signaled })

	var sb strings.Builder
	fmt.Fprintf(&sb, "| stop reaction (%d interleaved runs of each setup) | p50 | p99 | n |\n|---|---|---|---|\n", n)
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(&sb, "| %s | %s | %s | %d |\n", name, ms(pct(d, 0.50)), ms(pct(d, 0.99)), len(d))
	}
	row("**through the pod-local channel**: main's child exits → proxy's child receives SIGTERM", ch)
	row("**through the API only** (`KOORDINATOR_LOCAL_STATE=off`): main `terminated` written → proxy's child receives SIGTERM", ap)
	row("floor of the API reaction: the same write seen by a plain client-go watch (request start → event received)", fl)
	row("API reaction − its floor, per run", diff)
	row("instrument: main's child exits → a plain parent's wait returns (no koordinator)", exitFloor)
	row("instrument: a plain parent's kill(2) → proxy's child receives SIGTERM (no koordinator)", sigFloor)
	c50, a50, f50, a99, f99 := pct(ch, 0.5), pct(ap, 0.5), pct(fl, 0.5), pct(ap, 0.99), pct(fl, 0.99)
	e50, s50 := pct(exitFloor, 0.5), pct(sigFloor, 0.5)
	fmt.Fprintf(&sb, "| channel reaction − both instrument rows (p50 − p50 − p50): koordinator's own share | %s | | |\n", ms(c50-e50-s50))
	fmt.Fprintf(&sb, "| API reaction − its floor − the kill(2) instrument row (p50 − p50 − p50): koordinator's own share | %s | | |\n", ms(a50-f50-s50))
	sb.WriteString("\n")
	fmt.Fprintf(&sb, "Targets: the API reaction's own share ≤ 1 ms at p50 (issue 18): %s (%s). Channel ≤ 1 ms at p50 (issue 7): %s (%s). API reaction ≤ floor + 1 ms at p50 (issue 8): %s (%s; limit %s). "+
		"API reaction ≤ floor p99 + 3 ms at p99 (issue 8): %s (%s; limit %s).\n\n",
		verdict(a50-f50-s50 <= time.Millisecond), ms(a50-f50-s50), verdict(c50 <= time.Millisecond), ms(c50),
		verdict(a50 <= f50+time.Millisecond), ms(a50), ms(f50+time.Millisecond),
		verdict(a99 <= f99+3*time.Millisecond), ms(a99), ms(f99+3*time.Millisecond))

	p50 := func(ss []sample, f func(sample) time.Duration) string { return ms(pct(get(ss, f), 0.5)) }
	sb.WriteString("Where the time goes (p50 of each part, from the wrappers' own log timestamps; medians need not add up):\n\n")
	sb.WriteString("| part | channel | API only |\n|---|---|---|\n")
	fmt.Fprintf(&sb, "| main's child exits → main's wrapper has reaped it (logs \"child exited\"): the child's exit in the kernel, SIGCHLD, wait4 | %s | |\n",
		p50(channel, func(s sample) time.Duration { return s.reaped }))
	fmt.Fprintf(&sb, "| main's wrapper has reaped it → proxy's wrapper decides (logs \"stop dependencies exited\"): publishing, inotify, reading and judging the file | %s | |\n",
		p50(channel, func(s sample) time.Duration { return s.decided - s.reaped }))
	fmt.Fprintf(&sb, "| status written → proxy's wrapper decides: the write, the watch event, judging the pod | | %s |\n",
		p50(api, func(s sample) time.Duration { return s.decided }))
	fmt.Fprintf(&sb, "| proxy's wrapper decides → proxy's child receives SIGTERM: writing the decision's and the \"stop condition\" log lines, kill(2), Go's signal delivery in the child | %s | %s |\n",
		p50(channel, func(s sample) time.Duration { return s.signaled }), p50(api, func(s sample) time.Duration { return s.signaled }))
	return sb.String()
}

// logTime is the time (Unix nanoseconds) of the first line of a koordinator JSON log with msg.
func logTime(log, msg string) (int64, error) {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `"msg":"`+msg+`"`) {
			continue
		}
		m := logTimeField.FindStringSubmatch(line)
		if m == nil {
			break
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return 0, fmt.Errorf("log line %q: %w", line, err)
		}
		return t.UnixNano(), nil
	}
	return 0, fmt.Errorf("no %q line with a time in the log:\n%s", msg, log)
}

// logTimes is logTime of each msg in log.
func logTimes(log string, msgs ...string) ([]int64, error) {
	at := make([]int64, len(msgs))
	for i, msg := range msgs {
		var err error
		if at[i], err = logTime(log, msg); err != nil {
			return nil, err
		}
	}
	return at, nil
}

var logTimeField = regexp.MustCompile(`"time":"([^"]+)"`)

// pct is the nearest-rank percentile.
func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// --- small things ---------------------------------------------------------------------------

// removeFiles removes the files that exist of paths.
func removeFiles(paths ...string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func readStamp(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("no timestamp: %w", err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
