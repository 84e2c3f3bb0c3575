package main

// The "## Cold start and idle cost" section: cold start, time to first sync, RSS while watching and
// the API cost of idle wrappers, measured against the same control plane as the stop reaction.

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/koordinator-dev/koordinator/test/podstatus"
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
	list, err := b.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
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
	if err := os.Remove(stamp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	p, err := b.start("cold", b.env(pod, `{"name":"proxy","startDeps":["main"]}`, false),
		[]string{filepath.Join(dir, "koordinator"), b.helper, "start", stamp}, false)
	if err != nil {
		return s, err
	}
	defer p.kill()
	if err := p.waitExit(ctx); err != nil {
		return s, err
	}
	time.Sleep(time.Millisecond) // let the reader take the last output
	out := p.output()
	if !p.cmd.ProcessState.Success() {
		return s, fmt.Errorf("the wrapper failed (%s); its log:\n%s", p.cmd.ProcessState, out)
	}
	childAt, err := readStamp(stamp)
	if err != nil {
		return s, fmt.Errorf("%w; the wrapper's log:\n%s", err, out)
	}
	var at [3]int64
	for i, msg := range []string{"spec", "dependency ready", "child started"} {
		if at[i], err = logTime(out, msg); err != nil {
			return s, err
		}
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
	waitRSS, runRSS     []int64 // kB, per wrapper
	before, synced, end metrics
	syncWait, idle      time.Duration
}

// idleRun starts the idle wrappers (half of them waiting for a start dependency that never becomes
// Ready, half with their child running and a stop dependency that keeps running), each on its own
// pod and in its own emptyDir, and reads their RSS and the API server's metrics.
func (b *bench) idleRun(ctx context.Context, bin string, o idleOptions) (idleResult, error) {
	var r idleResult
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.kill()
		}
	}()
	type wrapper struct {
		p       *proc
		waiting bool
	}
	var ws []wrapper
	pods := make([]string, o.wrappers)
	for i := range pods {
		waiting := i%2 == 0
		pods[i] = fmt.Sprintf("idle-%d", i)
		pod, err := b.newPod(ctx, pods[i])
		if err != nil {
			return r, err
		}
		defer b.deletePod(pods[i])
		if waiting { // main runs but never becomes Ready
			podstatus.Set(&pod.Status, "main", func(s *corev1.ContainerStatus) { s.Ready = false })
			if _, err := b.client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
				return r, err
			}
		}
	}
	var err error
	if r.before, err = b.metrics(ctx); err != nil {
		return r, err
	}
	for i, pod := range pods {
		waiting := i%2 == 0
		dir := filepath.Join(b.tmp, fmt.Sprintf("emptydir-idle-%d", i))
		kb, err := install(bin, dir)
		if err != nil {
			return r, err
		}
		spec := `{"name":"proxy","stopDeps":["main"]}`
		if waiting {
			spec = `{"name":"proxy","startDeps":["main"]}`
		}
		p, err := b.start(pod, b.env(pod, spec, false), []string{kb, b.helper, "hold"}, false)
		if err != nil {
			return r, err
		}
		procs = append(procs, p)
		ws = append(ws, wrapper{p, waiting})
	}
	// Synced: every wrapper with a running child has started it; the waiting ones have no line
	// to show it at the default log level, so wait until the API server counts every watch (or,
	// without that gauge, a second more).
	began := time.Now()
	for _, w := range ws {
		if !w.waiting {
			if err := w.p.waitReady(ctx); err != nil {
				return r, err
			}
		}
	}
	base := r.before.watches()
	for {
		m, err := b.metrics(ctx)
		if err != nil {
			return r, err
		}
		if base < 0 || m.watches() >= base+float64(o.wrappers) {
			break
		}
		if time.Since(began) > waitLimit {
			return r, fmt.Errorf("the API server counts %v pod watches, %v before the wrappers", m.watches(), base)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return r, err
		}
	}
	if base < 0 {
		if err := sleep(ctx, time.Second); err != nil {
			return r, err
		}
	}
	r.syncWait = time.Since(began)
	if r.synced, err = b.metrics(ctx); err != nil {
		return r, err
	}
	synced := time.Now()
	fmt.Fprintf(os.Stderr, "benchreaction: %d idle wrappers synced in %s; idle for %s\n", o.wrappers, r.syncWait.Round(time.Millisecond), o.idle)

	if err := sleep(ctx, o.rssAfter-time.Since(synced)); err != nil {
		return r, err
	}
	for _, w := range ws {
		kb, err := vmRSS(w.p.cmd.Process.Pid)
		if err != nil {
			return r, fmt.Errorf("%s: %w; its log:\n%s", w.p.name, err, w.p.output())
		}
		if w.waiting {
			r.waitRSS = append(r.waitRSS, kb)
		} else {
			r.runRSS = append(r.runRSS, kb)
		}
	}
	if err := sleep(ctx, o.idle-time.Since(synced)); err != nil {
		return r, err
	}
	if r.end, err = b.metrics(ctx); err != nil {
		return r, err
	}
	r.idle = time.Since(synced)
	for _, w := range ws {
		select {
		case <-w.p.done:
			return r, fmt.Errorf("%s exited while idle; its log:\n%s", w.p.name, w.p.output())
		default:
		}
		if !w.waiting || !strings.Contains(w.p.output(), `"msg":"child started"`) {
			continue
		}
		return r, fmt.Errorf("%s started its child though its start dependency is not Ready; its log:\n%s", w.p.name, w.p.output())
	}
	if verbose {
		for _, w := range ws {
			fmt.Fprintf(os.Stderr, "--- %s:\n%s", w.p.name, w.p.output())
		}
	}
	return r, nil
}

// vmRSS is VmRSS from /proc/PID/status, in kB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
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
		g := metricLine.FindStringSubmatch(sc.Text())
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

	mb := func(kb []int64) string {
		s := slices.Clone(kb)
		slices.Sort(s)
		return fmt.Sprintf("%.1f MiB (%.1f–%.1f)", float64(s[(len(s)-1)/2])/1024, float64(s[0])/1024, float64(s[len(s)-1])/1024)
	}
	fmt.Fprintf(&sb, "| RSS while watching, VmRSS %s after sync | median (min–max) | n |\n|---|---|---|\n", o.rssAfter)
	fmt.Fprintf(&sb, "| wrapper waiting for a start dependency that never becomes Ready (no child) | %s | %d |\n", mb(r.waitRSS), len(r.waitRSS))
	fmt.Fprintf(&sb, "| wrapper with its child running (a stop dependency that keeps running) | %s | %d |\n", mb(r.runRSS), len(r.runRSS))
	worst := slices.Max(slices.Concat(r.waitRSS, r.runRSS))
	fmt.Fprintf(&sb, "\nTarget: ≤ 12 MB (issue 8; taken as 12 MiB, 12288 of /proc's 1024-byte kB): %s (largest %.1f MiB).\n\n", verdict(worst <= 12*1024), float64(worst)/1024)

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
	fmt.Fprintf(&sb, "\nTarget: 0 requests/min after sync and 1 watch per wrapper (issue 8, over %s here, not the issue's 5 min): %s.\n",
		r.idle.Round(time.Second), verdict(total == 0 && (r.end.watches() < 0 || r.end.watches()-r.before.watches() == n)))
	return sb.String()
}

// idleCost measures the cold start and the idle wrappers and writes their section.
func (b *bench) idleCost(ctx context.Context, bin string, o idleOptions, doc, goVersion string) error {
	loadAvg := strings.Join(firstFields(readLine("/proc/loadavg"), 3), " ")
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
	table := makeIdleTable(o, cold, r)
	fmt.Print(table)
	if doc == "" {
		return nil
	}
	var text strings.Builder
	err = template.Must(template.New("idle").Parse(idleSectionTemplate)).Execute(&text, map[string]any{
		"Date": time.Now().Format("2006-01-02"), "Cores": runtime.NumCPU(), "CPU": cpuModel(),
		"Kernel": readLine("/proc/sys/kernel/osrelease"), "GoVersion": goVersion, "Load": loadAvg,
		"Table": table, "ColdRuns": o.coldRuns, "Wrappers": o.wrappers, "RSSAfter": o.rssAfter, "Idle": r.idle.Round(time.Second),
	})
	if err != nil {
		return err
	}
	if err := replaceSection(doc, idleSection, text.String()); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: wrote %q in %s\n", idleSection, doc)
	return nil
}
