package main

// The "## Scale" section: many wrappers (two per pod, as in a Job with one sidecar) against the
// one API server: their total RSS, the API server's CPU while they idle, and the start reaction
// of one more wrapper while they run.

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
)

const scaleSection = "## Scale"

// scaleSectionTemplate is the "## Scale" section of docs/performance.md.
//
//go:embed scale.md.tmpl
var scaleSectionTemplate string

type scaleOptions struct {
	pods int           // pods, each with two wrappers (0: no scale run)
	idle time.Duration // idle time after sync over which RSS, CPU and requests are taken
	runs int           // start reactions while they run
}

// scaleResult is what the scale run measured.
type scaleResult struct {
	rss []rss // per wrapper, at the end of the idle window
	window
	runs  []startSample
	spawn []time.Duration
}

// rss is one process's resident set from /proc/PID/status, in kB, and its page tables (VmPTE).
type rss struct{ vm, anon, file, pte int64 }

// readRSS reads VmRSS, RssAnon, RssFile and VmPTE of pid.
func readRSS(pid int) (rss, error) {
	var r rss
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return r, err
	}
	found := 0
	for l := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		var p *int64
		switch k {
		case "VmRSS":
			p = &r.vm
		case "RssAnon":
			p = &r.anon
		case "RssFile":
			p = &r.file
		case "VmPTE":
			p = &r.pte
		default:
			continue
		}
		if *p, err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err != nil {
			return r, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		found++
	}
	if found != 4 {
		return r, fmt.Errorf("/proc/%d/status: no VmRSS, RssAnon, RssFile and VmPTE", pid)
	}
	return r, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuSeconds is utime+stime of the control-plane component name (testenv.APIServer,
// testenv.Etcd) from /proc/PID/stat; -1 when it cannot be found.
func (b *bench) cpuSeconds(name string) float64 {
	for _, pid := range b.cp.PIDs() {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(stat), ')')
		f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state); utime is 14, stime 15
		if i < 0 || len(f) < 13 || f[0] == "Z" {
			continue
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		s, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		return float64(u+s) / clockTicks
	}
	return -1
}

// scaleRun starts o.pods pods with two wrappers each, lets them idle, and measures.
func (b *bench) scaleRun(ctx context.Context, bin string, o scaleOptions) (r scaleResult, err error) {
	var procs []*proc
	var pods []string
	defer func() {
		for _, p := range procs { // the wrappers first, so that none sees its pod go
			p.kill()
		}
		for _, name := range pods {
			b.deletePod(name)
		}
		for i := range o.pods {
			if e := os.RemoveAll(filepath.Join(b.tmp, fmt.Sprintf("emptydir-scale-%d", i))); e != nil && err == nil {
				err = e
			}
		}
	}()
	for i := range o.pods {
		name := fmt.Sprintf("scale-%d", i)
		if _, err := b.newPod(ctx, name); err != nil {
			return r, err
		}
		pods = append(pods, name)
	}
	if r.before, err = b.metrics(ctx); err != nil {
		return r, err
	}
	began := time.Now()
	for i, pod := range pods {
		kb, err := install(bin, filepath.Join(b.tmp, fmt.Sprintf("emptydir-scale-%d", i)))
		if err != nil {
			return r, err
		}
		for _, c := range []struct{ name, spec string }{
			{"proxy", `{"name":"proxy","stopDeps":["main"]}`},
			{"main", `{"name":"main","startDeps":["proxy"]}`},
		} {
			p, err := b.start(pod+"/"+c.name, b.env(pod, c.spec, false), []string{kb, b.helper, "hold"}, false)
			if err != nil {
				return r, err
			}
			procs = append(procs, p)
		}
	}
	// Synced: every wrapper has started its child (which it does only once it has seen its pod,
	// its watch open) and the API server counts at least the proxies' watches (whether main's
	// stays open once its child runs is koordinator's business: the table shows the count).
	for _, p := range procs {
		if err := p.waitReady(ctx); err != nil {
			return r, err
		}
	}
	if _, err := b.waitWatches(ctx, r.before.watches(), o.pods, 100*time.Millisecond, began.Add(2*waitLimit)); err != nil {
		return r, err
	}
	if err := b.markSynced(ctx, &r.window, began); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d wrappers on %d pods synced in %s; idle for %s\n",
		len(procs), o.pods, r.syncWait.Round(time.Millisecond), o.idle)

	if err := sleep(ctx, o.idle); err != nil {
		return r, err
	}
	if err := b.markEnd(ctx, &r.window); err != nil {
		return r, err
	}
	for _, p := range procs {
		m, err := readRSS(p.cmd.Process.Pid)
		if err != nil {
			return r, fmt.Errorf("%s: %w; its log:\n%s", p.name, err, p.output())
		}
		r.rss = append(r.rss, m)
	}
	if err := b.allRunning(procs); err != nil {
		return r, err
	}

	kb, err := install(bin, filepath.Join(b.tmp, "emptydir-scale-start"))
	if err != nil {
		return r, err
	}
	began = time.Now()
	if r.runs, r.spawn, err = b.startRuns(ctx, o.runs, "scale-start", kb); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d start reactions while %d wrappers watch in %s\n", o.runs, len(procs), time.Since(began).Round(time.Millisecond))
	if err := b.allRunning(procs); err != nil {
		return r, err
	}
	if verbose {
		for _, p := range procs[:min(len(procs), 4)] {
			fmt.Fprintf(os.Stderr, "--- %s:\n%s", p.name, p.output())
		}
	}
	return r, nil
}

// allRunning checks that no wrapper has exited or stopped its child.
func (b *bench) allRunning(procs []*proc) error {
	for _, p := range procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited; its log:\n%s", p.name, p.output())
		default:
		}
		if strings.Contains(p.output(), `"msg":"stop condition"`) {
			return fmt.Errorf("%s decided to stop; its log:\n%s", p.name, p.output())
		}
	}
	return nil
}

func makeScaleTable(o scaleOptions, r scaleResult, idleCPUPerMin float64, idleWrappers int, singleP99 time.Duration) string {
	var sb strings.Builder
	n := len(r.rss)
	mib := func(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	col := func(f func(rss) int64) string {
		v := make([]int64, n)
		var sum int64
		for i, m := range r.rss {
			v[i] = f(m)
			sum += v[i]
		}
		slices.Sort(v)
		return fmt.Sprintf("%s | %s (%.1f–%.1f)", mib(sum), mib(v[(n-1)/2]), float64(v[0])/1024, float64(v[n-1])/1024)
	}
	fmt.Fprintf(&sb, "| %d wrappers on %d pods, %s after sync | total | per wrapper: median (min–max) |\n|---|---|---|\n", n, o.pods, r.idle.Round(time.Second))
	fmt.Fprintf(&sb, "| **RSS** (VmRSS) | %s |\n", col(func(m rss) int64 { return m.vm }))
	fmt.Fprintf(&sb, "| of which anonymous (RssAnon: heap, stacks, the runtime's data) | %s |\n", col(func(m rss) int64 { return m.anon }))
	fmt.Fprintf(&sb, "| of which file-backed (RssFile: the binary's pages in use) | %s |\n", col(func(m rss) int64 { return m.file }))
	minutes := r.idle.Minutes()
	if r.apiCPU >= 0 {
		fmt.Fprintf(&sb, "| **kube-apiserver CPU** over the idle %s (utime+stime, /proc/PID/stat; all its work) | %.2f s (%.3f s/min) | |\n",
			r.idle.Round(time.Second), r.apiCPU, r.apiCPU/minutes)
	} else {
		sb.WriteString("| kube-apiserver CPU over the idle window | unknown | |\n")
	}
	if idleCPUPerMin >= 0 {
		fmt.Fprintf(&sb, "| kube-apiserver CPU with the %d idle wrappers of the section above, for comparison | %.3f s/min | |\n", idleWrappers, idleCPUPerMin)
		if r.apiCPU >= 0 && n > idleWrappers {
			fmt.Fprintf(&sb, "| kube-apiserver CPU added per wrapper: the difference of the two rows ÷ %d more wrappers | | %.2f ms/min |\n",
				n-idleWrappers, (r.apiCPU/minutes-idleCPUPerMin)/float64(n-idleWrappers)*1000)
		}
	}
	if r.etcdCPU >= 0 {
		fmt.Fprintf(&sb, "| etcd CPU over the same window | %.2f s (%.3f s/min) | |\n", r.etcdCPU, r.etcdCPU/minutes)
	}
	keys, d := requestDelta(r.synced, r.end)
	var total float64
	for _, k := range keys {
		total += d[k]
	}
	verbs := ""
	if len(keys) > 0 {
		verbs = ": " + strings.Join(keys, ", ")
	}
	fmt.Fprintf(&sb, "| pod requests completed over the idle window (`apiserver_request_total`, resource=pods%s) | %.0f (%.2f/min) | %.4f/min |\n",
		verbs, total, total/minutes, total/minutes/float64(n))
	if base := r.before.watches(); base >= 0 {
		fmt.Fprintf(&sb, "| open pod watches: before the wrappers → synced → end of idle | %.0f → %.0f → %.0f | %.2f |\n",
			base, r.synced.watches(), r.end.watches(), (r.end.watches()-base)/float64(n))
	}
	fmt.Fprintf(&sb, "\nAll %d synced (every child started, every proxy's watch open) %s after the first was started.\n\n", n, r.syncWait.Round(time.Millisecond))

	fmt.Fprintf(&sb, "| start reaction while %d wrappers run (%d runs, each with a fresh pod and wrapper) | p50 | p99 | n |\n|---|---|---|---|\n", n, len(r.runs))
	startRows(&sb, r.runs, fmt.Sprintf(" with %d wrappers running", n))
	fmt.Fprintf(&sb, "| instrument: a plain parent starts the same child (no koordinator) | %s | %s | %d |\n",
		ms(pct(r.spawn, 0.5)), ms(pct(r.spawn, 0.99)), len(r.spawn))
	p99 := pct(startDurations(r.runs, func(s startSample) time.Duration { return s.reaction }), 0.99)
	if singleP99 > 0 {
		fmt.Fprintf(&sb, "\nTarget: start reaction p99 while %d wrappers run ≤ 2 × the single wrapper's p99 of the \"Start reaction\" section (issue 8): %s (%s; limit %s).\n",
			n, verdict(p99 <= 2*singleP99), ms(p99), ms(2*singleP99))
	} else {
		fmt.Fprintf(&sb, "\nTarget: start reaction p99 while %d wrappers run ≤ 2 × the single wrapper's p99 (issue 8): not judged (this run did not measure the single wrapper; -reaction=false).\n", n)
	}
	return sb.String()
}

// scale runs the scale measurement and writes its section.
func (b *bench) scale(ctx context.Context, bin string, o scaleOptions, doc string) error {
	if o.runs < 1 {
		return errors.New("-scale-runs must be at least 1")
	}
	machine := benchdoc.ThisMachine(b.goVersion)
	r, err := b.scaleRun(ctx, bin, o)
	if err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	return report(doc, scaleSection, idleSection, scaleSectionTemplate, makeScaleTable(o, r, b.idleCPUPerMin, b.idleWrappers, b.startP99), machine,
		map[string]any{"Pods": o.pods, "Wrappers": 2 * o.pods, "Idle": r.idle.Round(time.Second), "Runs": o.runs})
}
