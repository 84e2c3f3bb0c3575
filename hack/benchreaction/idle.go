package main

// The "## Cold start and idle cost" section: cold start, time to first sync, RSS while watching and
// the API cost of idle wrappers, measured against the same control plane as the stop reaction.

import (
	"bufio"
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

const idleSection = "## Cold start and idle cost"

// idleSectionTemplate is the "## Cold start and idle cost" section of docs/performance.md.
//
//go:embed idle.md.tmpl
var idleSectionTemplate string

type idleOptions struct {
	coldRuns int           // cold starts (and floor lists), interleaved
	wrappers int           // idle wrappers, half waiting for a start dependency, half with a child running
	rssAfter time.Duration // idle time before VmRSS is read
	idle     time.Duration // idle time over which the API requests are counted
}

// coldSample is one cold start, every figure from the wrapper's process start (just before fork
// and exec in the benchmark).
type coldSample struct {
	child     time.Duration // → the child's first instruction
	firstLog  time.Duration // → the wrapper logs "spec" (its first line: runtime, inits, flags, spec)
	seen      time.Duration // → the wrapper logs "dependency ready" (the pod's first state from the API)
	started   time.Duration // → the wrapper logs "child started"
	listFloor time.Duration // the benchmark's own plain list of the pod: request start → response
}

// coldRun starts one wrapper with every start dependency Ready and times its child's start.
func (b *bench) coldRun(ctx context.Context, pod, dir string) (coldSample, error) {
	var s coldSample
	t0 := time.Now()
	list, err := b.floor.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", pod).String(),
	})
	s.listFloor = time.Since(t0)
	if err != nil {
		return s, err
	}
	if len(list.Items) != 1 {
		return s, fmt.Errorf("the floor's list found %d pods", len(list.Items))
	}

	stamp := filepath.Join(b.tmp, "cold-start")
	if err := removeFiles(stamp); err != nil {
		return s, err
	}
	p, err := b.start("cold", b.env(pod, `{"name":"proxy","startDeps":["main"]}`, false),
		[]string{filepath.Join(dir, "koordinator"), b.helper, "start", stamp}, false)
	if err != nil {
		return s, err
	}
	defer p.kill()
	out, childAt, err := p.startResult(ctx, stamp)
	if err != nil {
		return s, err
	}
	at, err := logTimes(out, "spec", "dependency ready", "child started")
	if err != nil {
		return s, err
	}
	s.child = time.Duration(childAt - p.startedAt)
	s.firstLog = time.Duration(at[0] - p.startedAt)
	s.seen = time.Duration(at[1] - p.startedAt)
	s.started = time.Duration(at[2] - p.startedAt)
	if verbose {
		fmt.Fprintf(os.Stderr, "--- cold: %+v\n%s", s, out)
	}
	return s, nil
}

// idleResult is what the idle wrappers cost.
type idleResult struct {
	wait, run, floor []memSample // per wrapper (waiting; with its child running) and per plain child
	window
}

// window is the API server's side of a set of idle wrappers: its pod metrics before they were
// started, once they had synced and at the end of the idle time, and its and etcd's CPU over the
// idle time.
type window struct {
	before, synced, end metrics
	syncWait, idle      time.Duration // began → synced (markSynced's began), synced → end
	apiCPU, etcdCPU     float64       // CPU-seconds from synced to end; -1 if unknown

	syncedAt    time.Time
	api0, etcd0 float64
}

// markSynced takes the synced metrics and CPU, began being when the wrappers' start began.
func (b *bench) markSynced(ctx context.Context, w *window, began time.Time) (err error) {
	w.syncWait = time.Since(began)
	if w.synced, err = b.metrics(ctx); err != nil {
		return err
	}
	w.syncedAt = time.Now()
	w.api0, w.etcd0 = b.cpuSeconds(testenv.APIServer), b.cpuSeconds(testenv.Etcd)
	return nil
}

// markEnd takes the CPU and metrics at the end of the idle time.
func (b *bench) markEnd(ctx context.Context, w *window) (err error) {
	api1, etcd1 := b.cpuSeconds(testenv.APIServer), b.cpuSeconds(testenv.Etcd)
	w.idle = time.Since(w.syncedAt)
	if w.end, err = b.metrics(ctx); err != nil {
		return err
	}
	w.apiCPU, w.etcdCPU = -1, -1
	if w.api0 >= 0 && api1 >= 0 {
		w.apiCPU = api1 - w.api0
	}
	if w.etcd0 >= 0 && etcd1 >= 0 {
		w.etcdCPU = etcd1 - w.etcd0
	}
	return nil
}

// memSample is one container's memory: its main process's resident set and, with cgroups, its
// container's and its pod's cgroup.
type memSample struct {
	rss      rss
	ctr, pod cgMem
	cgroups  bool
}

// idleContainer is one of the idle run's containers.
type idleContainer struct {
	p            *proc
	waiting      bool
	ctrCg, podCg string // "" without cgroups
}

// podCgroups makes a pod's cgroup and its container's, and installs the binary into dir from an
// init container's cgroup under the pod, removed once it has run (as the runtime removes a
// finished init container's): the page cache of the copy stays charged to the pod, as on a node.
// Without cgroups it only installs; kb is "" when bin is "".
func (b *bench) podCgroups(pod, ctr, bin, dir string) (kb, ctrCg, podCg string, err error) {
	var initCg string
	if b.mc != nil {
		if podCg, err = b.mc.group(pod); err != nil {
			return "", "", "", err
		}
		if initCg, err = b.mc.group(pod, "init"); err != nil {
			return "", "", "", err
		}
		if ctrCg, err = b.mc.group(pod, ctr); err != nil {
			return "", "", "", err
		}
	}
	if bin != "" {
		if kb, err = b.installIn(bin, dir, initCg); err != nil {
			return "", "", "", err
		}
	}
	if initCg != "" {
		if err := b.mc.remove(pod, "init"); err != nil {
			return "", "", "", err
		}
	}
	return kb, ctrCg, podCg, nil
}

// readMem reads a container's figures.
func (b *bench) readMem(c idleContainer) (memSample, error) {
	var s memSample
	var err error
	if s.rss, err = readRSS(c.p.cmd.Process.Pid); err != nil {
		return s, err
	}
	if c.ctrCg == "" {
		return s, nil
	}
	if s.ctr, err = b.mc.read(c.ctrCg); err != nil {
		return s, err
	}
	if s.pod, err = b.mc.read(c.podCg); err != nil {
		return s, err
	}
	s.cgroups = true
	return s, nil
}

// idleRun starts the idle wrappers (half of them waiting for a start dependency that never becomes
// Ready, half with their child running and a stop dependency that keeps running), each on its own
// pod and in its own emptyDir, plus as many plain children alone in a container (no koordinator)
// as there are wrappers with a child, and reads their memory and the API server's metrics.
func (b *bench) idleRun(ctx context.Context, bin string, o idleOptions) (r idleResult, err error) {
	var cs, floors []idleContainer
	pods := make([]string, o.wrappers)
	defer func() {
		for _, c := range slices.Concat(cs, floors) {
			c.p.kill()
		}
		if b.mc == nil {
			return
		}
		for _, c := range slices.Concat(cs, floors) {
			if e := b.mc.remove(filepath.Base(c.podCg)); e != nil && err == nil {
				err = e
			}
		}
	}()
	for i := range pods {
		waiting := i%2 == 0
		pods[i] = fmt.Sprintf("idle-%d", i)
		pod, err := b.newPod(ctx, pods[i])
		if err != nil {
			return r, err
		}
		defer b.deletePod(pods[i])
		if waiting { // main runs but never becomes Ready
			if _, _, err := b.writeMain(ctx, pod, notReady); err != nil {
				return r, err
			}
		}
	}
	if r.before, err = b.metrics(ctx); err != nil {
		return r, err
	}
	for i, pod := range pods {
		waiting := i%2 == 0
		kb, ctrCg, podCg, err := b.podCgroups(pod, "proxy", bin, filepath.Join(b.tmp, fmt.Sprintf("emptydir-idle-%d", i)))
		if err != nil {
			return r, err
		}
		spec := `{"name":"proxy","stopDeps":["main"]}`
		if waiting {
			spec = `{"name":"proxy","startDeps":["main"]}`
		}
		p, err := b.start(pod, b.env(pod, spec, false), b.cgexec(ctrCg, []string{kb, b.helper, "hold"}), false)
		if err != nil {
			return r, err
		}
		cs = append(cs, idleContainer{p: p, waiting: waiting, ctrCg: ctrCg, podCg: podCg})
	}
	for i := range o.wrappers / 2 {
		name := fmt.Sprintf("idle-plain-%d", i)
		_, ctrCg, podCg, err := b.podCgroups(name, "proxy", "", "")
		if err != nil {
			return r, err
		}
		p, err := b.start(name, []string{"PATH=/usr/bin:/bin"}, b.cgexec(ctrCg, []string{b.helper, "hold"}), false)
		if err != nil {
			return r, err
		}
		p.direct = true
		floors = append(floors, idleContainer{p: p, ctrCg: ctrCg, podCg: podCg})
	}
	// Synced: every wrapper with a running child has started it; the waiting ones have no line
	// to show it at the default log level, so wait until the API server counts every watch (or,
	// without that gauge, a second more).
	began := time.Now()
	for _, c := range slices.Concat(cs, floors) {
		if !c.waiting {
			if err := c.p.waitReady(ctx); err != nil {
				return r, err
			}
		}
	}
	if _, err := b.waitWatches(ctx, r.before.watches(), o.wrappers, 100*time.Millisecond, began.Add(waitLimit)); err != nil {
		return r, err
	}
	if r.before.watches() < 0 {
		if err := sleep(ctx, time.Second); err != nil {
			return r, err
		}
	}
	if err := b.markSynced(ctx, &r.window, began); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d idle wrappers synced in %s; idle for %s\n", o.wrappers, r.syncWait.Round(time.Millisecond), o.idle)

	if err := sleep(ctx, o.rssAfter-time.Since(r.syncedAt)); err != nil {
		return r, err
	}
	for _, c := range slices.Concat(cs, floors) {
		m, err := b.readMem(c)
		if err != nil {
			return r, fmt.Errorf("%s: %w; its log:\n%s", c.p.name, err, c.p.output())
		}
		switch {
		case c.p.direct:
			r.floor = append(r.floor, m)
		case c.waiting:
			r.wait = append(r.wait, m)
		default:
			r.run = append(r.run, m)
		}
	}
	if err := sleep(ctx, o.idle-time.Since(r.syncedAt)); err != nil {
		return r, err
	}
	if err := b.markEnd(ctx, &r.window); err != nil {
		return r, err
	}
	for _, c := range slices.Concat(cs, floors) {
		select {
		case <-c.p.done:
			return r, fmt.Errorf("%s exited while idle; its log:\n%s", c.p.name, c.p.output())
		default:
		}
		if !c.waiting || !strings.Contains(c.p.output(), `"msg":"child started"`) {
			continue
		}
		return r, fmt.Errorf("%s started its child though its start dependency is not Ready; its log:\n%s", c.p.name, c.p.output())
	}
	if verbose {
		for _, c := range cs {
			fmt.Fprintf(os.Stderr, "--- %s:\n%s", c.p.name, c.p.output())
		}
	}
	return r, nil
}

// metrics is the pod-related part of the API server's /metrics.
type metrics struct {
	requests map[string]float64 // apiserver_request_total for resource="pods", by verb (and subresource)
	watchers float64            // apiserver_registered_watchers{kind="Pod"}; -1 if absent
	longrun  float64            // apiserver_longrunning_requests{resource="pods",verb="WATCH"}; -1 if absent
}

// watches is the API server's count of open pod watches: the longrunning gauge, else the
// registered watchers, else -1.
func (m metrics) watches() float64 {
	if m.longrun >= 0 {
		return m.longrun
	}
	return m.watchers
}

var metricLine = regexp.MustCompile(`^(\w+)\{(.*)\} (\S+)$`)
var metricLabel = regexp.MustCompile(`(\w+)="([^"]*)"`)

func (b *bench) metrics(ctx context.Context) (metrics, error) {
	m := metrics{requests: map[string]float64{}, watchers: -1, longrun: -1}
	raw, err := b.client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return m, fmt.Errorf("the API server's /metrics: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") && !strings.HasPrefix(line, "apiserver_registered_watchers{") &&
			!strings.HasPrefix(line, "apiserver_longrunning_requests{") {
			continue // most of the ~10k lines: skipped before the regular expression
		}
		g := metricLine.FindStringSubmatch(line)
		if g == nil {
			continue
		}
		name := g[1]
		if name != "apiserver_request_total" && name != "apiserver_registered_watchers" && name != "apiserver_longrunning_requests" {
			continue
		}
		labels := map[string]string{}
		for _, l := range metricLabel.FindAllStringSubmatch(g[2], -1) {
			labels[l[1]] = l[2]
		}
		v, err := strconv.ParseFloat(g[3], 64)
		if err != nil {
			continue
		}
		add := func(p *float64) { *p = max(*p, 0) + v }
		switch {
		case name == "apiserver_request_total" && labels["resource"] == "pods":
			key := labels["verb"]
			if sub := labels["subresource"]; sub != "" {
				key += " " + sub
			}
			m.requests[key] += v
		case name == "apiserver_registered_watchers" && labels["kind"] == "Pod" && labels["group"] == "":
			add(&m.watchers)
		case name == "apiserver_longrunning_requests" && labels["resource"] == "pods" && labels["verb"] == "WATCH" && labels["subresource"] == "":
			add(&m.longrun)
		}
	}
	return m, sc.Err()
}

// requestDelta is the change in each pod request count from a to b, verbs sorted; zero changes
// are left out.
func requestDelta(a, b metrics) (keys []string, d map[string]float64) {
	d = map[string]float64{}
	for k, v := range b.requests {
		if dv := v - a.requests[k]; dv != 0 {
			d[k] = dv
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, d
}

func makeIdleTable(o idleOptions, cold []coldSample, r idleResult) string {
	var sb strings.Builder
	get := func(f func(coldSample) time.Duration) []time.Duration {
		d := make([]time.Duration, len(cold))
		for i, s := range cold {
			d[i] = f(s)
		}
		return d
	}
	child := get(func(s coldSample) time.Duration { return s.child })
	floor := get(func(s coldSample) time.Duration { return s.listFloor })
	fmt.Fprintf(&sb, "| cold start (%d interleaved runs, every start dependency already Ready) | p50 | p99 | n |\n|---|---|---|---|\n", len(cold))
	row := func(name string, d []time.Duration) {
		fmt.Fprintf(&sb, "| %s | %s | %s | %d |\n", name, ms(pct(d, 0.50)), ms(pct(d, 0.99)), len(d))
	}
	row("**cold start**: process start (just before fork and exec) → child's first instruction", child)
	row("floor: a plain client-go list of the pod from the benchmark (request start → response)", floor)
	row("**time to first informer sync**: process start → the wrapper logs \"dependency ready\" (the pod's first state from the API)", get(func(s coldSample) time.Duration { return s.seen }))
	row("part: process start → the wrapper's first log line (\"spec\": runtime, package inits, flags, spec)", get(func(s coldSample) time.Duration { return s.firstLog }))
	row("part: first log line → pod seen (client set-up, list, watch)", get(func(s coldSample) time.Duration { return s.seen - s.firstLog }))
	row("part: pod seen → the wrapper logs \"child started\"", get(func(s coldSample) time.Duration { return s.started - s.seen }))
	row("part: \"child started\" logged → child's first instruction", get(func(s coldSample) time.Duration { return s.child - s.started }))
	c50, f50 := pct(child, 0.5), pct(floor, 0.5)
	fmt.Fprintf(&sb, "\nTarget: cold start ≤ floor + 2 ms at p50 (issue 8): %s (%s; limit %s).\n\n",
		verdict(c50 <= f50+2*time.Millisecond), ms(c50), ms(f50+2*time.Millisecond))

	sb.WriteString(makeMemTable(o.rssAfter, r))
	n := float64(o.wrappers)
	minutes := r.idle.Minutes()
	fmt.Fprintf(&sb, "| API cost of %d idle wrappers (`apiserver_request_total`, resource=pods) | total | per wrapper |\n|---|---|---|\n", o.wrappers)
	keys, d := requestDelta(r.before, r.synced)
	if len(keys) == 0 {
		fmt.Fprintf(&sb, "| start-up until synced (%s): completed pod requests | 0 | 0 |\n", r.syncWait.Round(time.Millisecond))
	}
	for _, k := range keys {
		fmt.Fprintf(&sb, "| start-up until synced (%s): %s | %.0f | %.1f |\n", r.syncWait.Round(time.Millisecond), k, d[k], d[k]/n)
	}
	keys, d = requestDelta(r.synced, r.end)
	var total float64
	for _, k := range keys {
		fmt.Fprintf(&sb, "| idle %s: %s | %.0f | %.1f |\n", r.idle.Round(time.Second), k, d[k], d[k]/n)
		total += d[k]
	}
	fmt.Fprintf(&sb, "| **idle %s: all pod requests, per minute** | %.2f | **%.3f** |\n", r.idle.Round(time.Second), total/minutes, total/minutes/n)
	gauge := func(name string, f func(metrics) float64) {
		if f(r.before) < 0 {
			fmt.Fprintf(&sb, "| %s | not exported | |\n", name)
			return
		}
		fmt.Fprintf(&sb, "| %s: before the wrappers → synced → end of idle | %.0f → %.0f → %.0f | **%.1f** |\n",
			name, f(r.before), f(r.synced), f(r.end), (f(r.end)-f(r.before))/n)
	}
	gauge("open pod watches (`apiserver_longrunning_requests`, verb WATCH)", func(m metrics) float64 { return m.longrun })
	gauge("pod watchers (`apiserver_registered_watchers`, kind Pod)", func(m metrics) float64 { return m.watchers })
	if r.apiCPU >= 0 {
		fmt.Fprintf(&sb, "| kube-apiserver CPU over the idle %s (utime+stime from /proc/PID/stat; all its work, not only the wrappers') | %.2f s (%.3f s/min) | |\n",
			r.idle.Round(time.Second), r.apiCPU, r.apiCPU/minutes)
	}
	window := "the issue's 5 min"
	if r.idle < 5*time.Minute {
		window = fmt.Sprintf("over %s here, not the issue's 5 min", r.idle.Round(time.Second))
	}
	// The API server does not tell whose requests these are. A wrapper's watch cannot end by its
	// timeout (5-10 min) before 5 min after it opened, while the control plane's own pod watches
	// (open before the wrappers started) time out all along: WATCH completions up to their number
	// in a window that ends before the first wrapper's watch is 5 min old are theirs.
	// Past 5 min after the first wrapper started, a wrapper's watch may have timed out: over a
	// stretch t of that, each of n wrappers with probability at most t/5min (uniform timeouts).
	watchEnds, others := d["WATCH"], r.before.watches()
	watchesOK := r.end.watches() < 0 || r.end.watches()-others == n
	over := max(r.idle+r.syncWait-5*time.Minute, 0)
	theirs := others >= 0 && watchEnds <= others && over < time.Second
	var why string
	switch {
	case total == 0:
		why = "no pod request completed"
	case total == watchEnds && theirs:
		why = fmt.Sprintf("the %.0f WATCH completions are taken for the control plane's: it had %.0f pod watches open before the wrappers started, "+
			"which client-go times out every 5–10 min; the window ended %s after the first wrapper started, and a wrapper's watch times out 5–10 min after it opened, "+
			"so the chance that one did within the window is below %.1f%%",
			watchEnds, others, (r.idle + r.syncWait).Round(100*time.Millisecond), 100*n*over.Minutes()/5)
	default:
		why = "pod requests the control plane's own watches do not explain"
	}
	fmt.Fprintf(&sb, "\nTarget: 0 requests/min after sync and 1 watch per wrapper (issue 8, %s): %s (%s).\n",
		window, verdict(watchesOK && (total == 0 || (total == watchEnds && theirs))), why)
	return sb.String()
}

// idleCost measures the cold start and the idle wrappers and writes their section.
func (b *bench) idleCost(ctx context.Context, bin string, o idleOptions, doc string) error {
	machine := benchdoc.ThisMachine(b.goVersion)
	const pod = "cold"
	if _, err := b.newPod(ctx, pod); err != nil {
		return err
	}
	defer b.deletePod(pod)
	dir := filepath.Join(b.tmp, "emptydir-cold")
	if _, err := install(bin, dir); err != nil {
		return err
	}
	began := time.Now()
	cold := make([]coldSample, 0, o.coldRuns)
	for i := range o.coldRuns {
		s, err := b.coldRun(ctx, pod, dir)
		if err != nil {
			return fmt.Errorf("cold start %d: %w", i, err)
		}
		cold = append(cold, s)
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d cold starts in %s\n", o.coldRuns, time.Since(began).Round(time.Millisecond))
	r, err := b.idleRun(ctx, bin, o)
	if err != nil {
		return fmt.Errorf("idle wrappers: %w", err)
	}
	if r.apiCPU >= 0 {
		b.idleCPUPerMin, b.idleWrappers = r.apiCPU/r.idle.Minutes(), o.wrappers
	}
	version, binMiB := "v1", "?"
	if b.mc != nil && b.mc.v2 {
		version = "v2"
	}
	if st, err := os.Stat(bin); err == nil {
		binMiB = fmt.Sprintf("%.1f MiB", float64(st.Size())/(1<<20))
	}
	return report(doc, idleSection, "", idleSectionTemplate, makeIdleTable(o, cold, r), machine, map[string]any{
		"Cgroups": b.mc != nil, "CgroupWhy": b.noMemcg, "CgroupVersion": version, "BinaryMiB": binMiB,
		"ColdRuns": o.coldRuns, "Wrappers": o.wrappers, "RSSAfter": o.rssAfter, "Idle": r.idle.Round(time.Second),
		"Short": r.idle < 5*time.Minute,
	})
}

// makeMemTable is the idle wrappers' memory: the cgroup figures the kubelet reports (or, without
// cgroups, an estimate) and the process's resident set, with the targets.
func makeMemTable(after time.Duration, r idleResult) string {
	var sb strings.Builder
	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	// med is the median (and the range, with full) of f over ms, in bytes.
	med := func(ms []memSample, f func(memSample) int64, full bool) string {
		v := make([]int64, len(ms))
		for i, m := range ms {
			v[i] = f(m)
		}
		slices.Sort(v)
		if !full {
			return mib(v[(len(v)-1)/2])
		}
		return fmt.Sprintf("%s (%.1f–%.1f)", mib(v[(len(v)-1)/2]), float64(v[0])/(1<<20), float64(v[len(v)-1])/(1<<20))
	}
	largest := func(ms []memSample, f func(memSample) int64) int64 {
		var w int64
		for _, m := range ms {
			w = max(w, f(m))
		}
		return w
	}
	rows := []struct {
		name string
		ms   []memSample
	}{
		{"wrapper waiting for a start dependency that never becomes Ready (no child)", r.wait},
		{"wrapper with its child running (a stop dependency that keeps running); the container holds the child too", r.run},
		{"floor: the same child alone in a container (`helper hold`, no koordinator)", r.floor},
	}
	cgroups := len(r.wait) > 0 && r.wait[0].cgroups
	ws := func(m memSample) int64 { return m.ctr.workingSet() }
	if cgroups {
		fmt.Fprintf(&sb, "| memory as the kubelet reports it, %s after sync (bytes of the container's memory cgroup) | **working set**: median (min–max) | anon | kernel | file: active / inactive | pod's working set | pod's page cache | n |\n|---|---|---|---|---|---|---|---|\n", after)
		for _, row := range rows {
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s / %s | %s | %s | %d |\n", row.name, med(row.ms, ws, true),
				med(row.ms, func(m memSample) int64 { return m.ctr.anon }, false),
				med(row.ms, func(m memSample) int64 { return m.ctr.kernel }, false),
				med(row.ms, func(m memSample) int64 { return m.ctr.activeFile }, false),
				med(row.ms, func(m memSample) int64 { return m.ctr.inactiveFile }, false),
				med(row.ms, func(m memSample) int64 { return m.pod.workingSet() }, false),
				med(row.ms, func(m memSample) int64 { return m.pod.file }, false), len(row.ms))
		}
	} else {
		ws = func(m memSample) int64 { return (m.rss.anon + m.rss.pte) * 1024 }
		fmt.Fprintf(&sb, "| memory, %s after sync: **no memory cgroups on this run** (see below) | working set, **estimated** as RssAnon + page tables (VmPTE): median (min–max) | n |\n|---|---|---|\n", after)
		for _, row := range rows {
			fmt.Fprintf(&sb, "| %s | %s | %d |\n", row.name, med(row.ms, ws, true), len(row.ms))
		}
	}
	sb.WriteString("\n")
	kb := func(f func(rss) int64) func(memSample) int64 {
		return func(m memSample) int64 { return f(m.rss) * 1024 }
	}
	fmt.Fprintf(&sb, "| the wrapper's (or plain child's) process, %s after sync (`/proc/PID/status`) | VmRSS: median (min–max) | RssAnon: median | RssFile: median | n |\n|---|---|---|---|---|\n", after)
	for _, row := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %d |\n", strings.Split(row.name, ";")[0], med(row.ms, kb(func(m rss) int64 { return m.vm }), true),
			med(row.ms, kb(func(m rss) int64 { return m.anon }), false), med(row.ms, kb(func(m rss) int64 { return m.file }), false), len(row.ms))
	}
	wrappers := slices.Concat(r.wait, r.run)
	worstVM := largest(wrappers, kb(func(m rss) int64 { return m.vm }))
	worstWS := largest(r.wait, ws)
	estimate := ""
	if !cgroups {
		estimate = ", estimated"
	}
	fmt.Fprintf(&sb, "\nTargets: working set of a waiting wrapper's container ≤ 6 MiB (issue 18): %s (largest %s%s). "+
		"VmRSS ≤ 9.6 MiB (issue 18: no higher than before it) and ≤ 12 MiB (issue 8): %s and %s (largest %s).\n\n",
		verdict(worstWS <= 6<<20), mib(worstWS), estimate, verdict(worstVM <= 96<<20/10), verdict(worstVM <= 12<<20), mib(worstVM))
	return sb.String()
}
