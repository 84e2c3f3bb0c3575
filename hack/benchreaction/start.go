package main

// The "## Start reaction" section: how soon a waiting wrapper's child starts once its start
// dependency is written Ready, beside a plain client-go watch that sees the same write (the
// floor), and the instrument row of a plain parent starting the same child.

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
)

const startSection = "## Start reaction"

// startSectionTemplate is the "## Start reaction" section of docs/performance.md.
//
//go:embed start.md.tmpl
var startSectionTemplate string

// startSample is one start reaction, every figure from the time taken just before the status
// write that makes main Ready.
type startSample struct {
	reaction time.Duration // → the wrapper's child's first instruction
	floor    time.Duration // → the benchmark's own watch has the event
	decided  time.Duration // → the wrapper logs "dependency ready"
	started  time.Duration // → the wrapper logs "child started"
	scrape   time.Duration // the last /metrics read before the write, which found the wrapper's watch
	faults   int64         // minor page faults of the wrapper and its child from just before the write to their exit
}

// scrapeQuiet is the idle time between the /metrics read that found the wrapper's watch and the
// write: the read costs the API server tens of ms of CPU (and its garbage collector some after).
const scrapeQuiet = 200 * time.Millisecond

// watchCheckAfter is how long after the wrapper's "waiting for start dependencies" line the
// benchmark first reads /metrics for its watch: its whole start-up to the pod's first state
// takes ~20-45 ms (the cold start's parts), and each read costs the API server a few ms of CPU.
const watchCheckAfter = 150 * time.Millisecond

// notReady makes a running container not Ready (its readiness probe failing, or not yet passed).
func notReady(s *corev1.ContainerStatus) { s.Ready = false }

// nowReady makes a running container Ready, as the kubelet writes it once its readiness probe
// passes: startedAt stays.
func nowReady(s *corev1.ContainerStatus) { s.Ready = true }

func mainReady(p *corev1.Pod) bool {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == "main" && s.Ready && s.State.Running != nil {
			return true
		}
	}
	return false
}

// startRun is one start reaction: a fresh pod whose main runs but is not Ready, a fresh wrapper
// {"name":"proxy","startDeps":["main"]} running `helper start FILE` from dir, and a plain watch
// of the pod in this process; once the wrapper's watch is open, main is written Ready.
func (b *bench) startRun(ctx context.Context, name, kb string) (startSample, error) {
	var s startSample
	pod, err := b.newPod(ctx, name)
	if err != nil {
		return s, err
	}
	defer b.deletePod(name)
	if pod, _, err = b.writeMain(ctx, pod, notReady); err != nil {
		return s, err
	}
	if err := os.RemoveAll(filepath.Join(filepath.Dir(kb), ".state")); err != nil {
		return s, err
	}
	stamp := filepath.Join(b.tmp, "start-reaction")
	if err := removeFiles(stamp); err != nil {
		return s, err
	}

	w, err := b.watchPod(ctx, pod, mainReady, "main's readiness")
	if err != nil {
		return s, err
	}
	defer w.stop()
	before, err := b.metrics(ctx)
	if err != nil {
		return s, err
	}

	p, err := b.start(name, b.env(name, `{"name":"proxy","startDeps":["main"]}`, false),
		[]string{kb, b.helper, "start", stamp}, false)
	if err != nil {
		return s, err
	}
	defer p.kill()
	if s.scrape, err = b.waitWatching(ctx, p, before.watches()); err != nil {
		return s, err
	}
	if err := sleep(ctx, scrapeQuiet); err != nil {
		return s, err
	}
	if out := p.output(); strings.Contains(out, `"msg":"dependency ready"`) || strings.Contains(out, `"msg":"koordinator exits"`) {
		return s, fmt.Errorf("the wrapper did not wait for main; its log:\n%s", out)
	}

	faultsBefore := minorFaults(p.cmd.Process.Pid)
	_, written, err := b.writeMain(ctx, pod, nowReady)
	if err != nil {
		return s, err
	}
	eventAt, err := w.seen(ctx)
	if err != nil {
		return s, err
	}
	out, childAt, err := p.startResult(ctx, stamp)
	if err != nil {
		return s, err
	}
	at, err := logTimes(out, "dependency ready", "child started")
	if err != nil {
		return s, err
	}
	decided, started := at[0], at[1]
	if decided < written {
		return s, fmt.Errorf("the wrapper saw main Ready before the write (its first sync came late); its log:\n%s", out)
	}
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && faultsBefore >= 0 {
		s.faults = ru.Minflt - faultsBefore
	}
	s.reaction = time.Duration(childAt - written)
	s.floor = time.Duration(eventAt - written)
	s.decided = time.Duration(decided - written)
	s.started = time.Duration(started - written)
	if verbose {
		fmt.Fprintf(os.Stderr, "--- %s: %+v\n%s", name, s, out)
	}
	return s, nil
}

// waitWatching waits until the wrapper has logged "waiting for start dependencies" (its informer
// runs), then watchCheckAfter, then until the API server counts one more open pod watch than
// base: the wrapper's. At the default log level nothing else shows that a waiting wrapper has
// its pod; and until steadyAfter has passed since the line (less scrapeQuiet, which the caller
// adds). It returns how long the last /metrics read took.
func (b *bench) waitWatching(ctx context.Context, p *proc, base float64) (time.Duration, error) {
	limit := time.Now().Add(waitLimit)
	for !strings.Contains(p.output(), `"msg":"waiting for start dependencies"`) {
		select {
		case <-p.changed:
		case <-p.done:
			time.Sleep(10 * time.Millisecond)
			return 0, fmt.Errorf("%s exited while waiting (%s); its log:\n%s", p.name, p.cmd.ProcessState, p.output())
		case <-time.After(time.Until(limit)):
			return 0, fmt.Errorf("%s did not log \"waiting for start dependencies\" within %s; its log:\n%s", p.name, waitLimit, p.output())
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	waiting := time.Now()
	if err := sleep(ctx, watchCheckAfter); err != nil {
		return 0, err
	}
	took, err := b.waitWatches(ctx, base, 1, 20*time.Millisecond, limit)
	if err != nil {
		return 0, fmt.Errorf("%w; %s's log:\n%s", err, p.name, p.output())
	}
	// The line was seen within a few ms of being written; scrapeQuiet follows this wait.
	if err := sleep(ctx, time.Until(waiting.Add(steadyAfter-scrapeQuiet))); err != nil {
		return 0, err
	}
	return took, nil
}

// waitWatches reads the API server's /metrics every poll until it counts at least more open pod
// watches than base (at once when it does not export them: base < 0), until deadline. It returns
// how long the last read took.
func (b *bench) waitWatches(ctx context.Context, base float64, more int, poll time.Duration, deadline time.Time) (time.Duration, error) {
	for {
		t := time.Now()
		m, err := b.metrics(ctx)
		took := time.Since(t)
		if err != nil {
			return 0, err
		}
		if base < 0 || m.watches() >= base+float64(more) {
			return took, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the API server counts %v pod watches, %v before the wrappers started", m.watches(), base)
		}
		if err := sleep(ctx, poll); err != nil {
			return 0, err
		}
	}
}

// startResult waits for a wrapper running `helper start FILE` to exit, checks that it succeeded,
// and returns its log and the time (Unix ns) its child wrote to FILE.
func (p *proc) startResult(ctx context.Context, stamp string) (out string, childAt int64, err error) {
	if err := p.waitExit(ctx); err != nil {
		return "", 0, err
	}
	time.Sleep(time.Millisecond) // let the reader take the last output
	out = p.output()
	if !p.cmd.ProcessState.Success() {
		return "", 0, fmt.Errorf("the wrapper failed (%s); its log:\n%s", p.cmd.ProcessState, out)
	}
	if childAt, err = readStamp(stamp); err != nil {
		return "", 0, fmt.Errorf("%w; the wrapper's log:\n%s", err, out)
	}
	return out, childAt, nil
}

// spawnFloorRun times a plain parent starting `helper start FILE`: just before fork and exec →
// the child's first instruction (no koordinator).
func (b *bench) spawnFloorRun(ctx context.Context) (time.Duration, error) {
	stamp := filepath.Join(b.tmp, "spawn-floor")
	if err := removeFiles(stamp); err != nil {
		return 0, err
	}
	p, err := b.start("start helper", []string{"PATH=/usr/bin:/bin"}, []string{b.helper, "start", stamp}, false)
	if err != nil {
		return 0, err
	}
	p.direct = true
	defer p.kill()
	if err := p.waitExit(ctx); err != nil {
		return 0, err
	}
	at, err := readStamp(stamp)
	if err != nil {
		return 0, err
	}
	return time.Duration(at - p.startedAt), nil
}

// startRuns runs the start reaction n times (pods prefix-0, prefix-1, ...) from the wrapper
// binary kb, each followed by the instrument run.
func (b *bench) startRuns(ctx context.Context, n int, prefix, kb string) (runs []startSample, spawn []time.Duration, err error) {
	for i := range n {
		s, err := b.startRun(ctx, fmt.Sprintf("%s-%d", prefix, i), kb)
		if err != nil {
			return nil, nil, fmt.Errorf("start reaction run %d: %w", i, err)
		}
		runs = append(runs, s)
		d, err := b.spawnFloorRun(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("instrument start run %d: %w", i, err)
		}
		spawn = append(spawn, d)
	}
	return runs, spawn, nil
}

// startTargets is the issues' targets for the start reaction, as a markdown line; own is
// koordinator's own share at p50.
func startTargets(runs []startSample, own time.Duration) string {
	r, f := startDurations(runs, func(s startSample) time.Duration { return s.reaction }), startDurations(runs, func(s startSample) time.Duration { return s.floor })
	r50, f50, r99, f99 := pct(r, 0.5), pct(f, 0.5), pct(r, 0.99), pct(f, 0.99)
	return fmt.Sprintf("Targets: the start reaction's own share ≤ 1 ms at p50 (issue 18): %s (%s). Start reaction ≤ floor + 1 ms at p50 (issue 8): %s (%s; limit %s). "+
		"Start reaction ≤ floor p99 + 3 ms at p99 (issue 8): %s (%s; limit %s).\n",
		verdict(own <= time.Millisecond), ms(own), verdict(r50 <= f50+time.Millisecond), ms(r50), ms(f50+time.Millisecond),
		verdict(r99 <= f99+3*time.Millisecond), ms(r99), ms(f99+3*time.Millisecond))
}

func startDurations(runs []startSample, f func(startSample) time.Duration) []time.Duration {
	d := make([]time.Duration, len(runs))
	for i, s := range runs {
		d[i] = f(s)
	}
	return d
}

// startRows writes the reaction, floor and difference rows of a start-reaction table.
func startRows(sb *strings.Builder, runs []startSample, what string) {
	row := func(name string, f func(startSample) time.Duration) {
		d := startDurations(runs, f)
		fmt.Fprintf(sb, "| %s | %s | %s | %d |\n", name, ms(pct(d, 0.50)), ms(pct(d, 0.99)), len(d))
	}
	row("**start reaction**"+what+": main written Ready → the waiting wrapper's child's first instruction", func(s startSample) time.Duration { return s.reaction })
	row("floor: the same write seen by a plain client-go watch (request start → event received)", func(s startSample) time.Duration { return s.floor })
	row("start reaction − its floor, per run", func(s startSample) time.Duration { return s.reaction - s.floor })
}

func makeStartTable(runs []startSample, spawn []time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "| start reaction (%d runs, each with a fresh pod and wrapper) | p50 | p99 | n |\n|---|---|---|---|\n", len(runs))
	startRows(&sb, runs, "")
	fmt.Fprintf(&sb, "| instrument: a plain parent starts the same child (just before fork and exec → its first instruction; no koordinator) | %s | %s | %d |\n",
		ms(pct(spawn, 0.5)), ms(pct(spawn, 0.99)), len(spawn))
	r50 := pct(startDurations(runs, func(s startSample) time.Duration { return s.reaction }), 0.5)
	f50 := pct(startDurations(runs, func(s startSample) time.Duration { return s.floor }), 0.5)
	own := r50 - f50 - pct(spawn, 0.5)
	fmt.Fprintf(&sb, "| start reaction − floor − instrument (p50 − p50 − p50): koordinator's own share | %s | | |\n", ms(own))
	sb.WriteString("\n" + startTargets(runs, own) + "\n")

	p50 := func(f func(startSample) time.Duration) string { return ms(pct(startDurations(runs, f), 0.5)) }
	sb.WriteString("Where the time goes (p50 of each part, from the wrapper's own log timestamps; medians need not add up):\n\n")
	sb.WriteString("| part | p50 |\n|---|---|\n")
	fmt.Fprintf(&sb, "| status written → the wrapper decides (logs \"dependency ready\"): the write, the watch event, judging the pod | %s |\n",
		p50(func(s startSample) time.Duration { return s.decided }))
	fmt.Fprintf(&sb, "| the wrapper decides → it logs \"child started\": fork and exec of the child, publishing its state file, a log line | %s |\n",
		p50(func(s startSample) time.Duration { return s.started - s.decided }))
	fmt.Fprintf(&sb, "| \"child started\" logged → the child's first instruction: the rest of exec, the child's Go runtime start | %s |\n",
		p50(func(s startSample) time.Duration { return s.reaction - s.started }))
	scrape := startDurations(runs, func(s startSample) time.Duration { return s.scrape })
	fmt.Fprintf(&sb, "\nBefore each write, the /metrics read that found the wrapper's watch took p50 %s, p99 %s; it ended %s before the write.\n",
		ms(pct(scrape, 0.5)), ms(pct(scrape, 0.99)), scrapeQuiet)
	return sb.String()
}

// startReaction measures the start reaction n times and writes its section; it keeps the
// reaction's p99 for the scale run's target.
func (b *bench) startReaction(ctx context.Context, bin string, n int, doc string) error {
	machine := benchdoc.ThisMachine(b.goVersion)
	kb, err := install(bin, filepath.Join(b.tmp, "emptydir-start"))
	if err != nil {
		return err
	}
	began := time.Now()
	fmt.Fprintf(os.Stderr, "benchreaction: start reaction, %d runs\n", n)
	runs, spawn, err := b.startRuns(ctx, n, "start", kb)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreaction: %d start reactions in %s\n", n, time.Since(began).Round(time.Millisecond))
	b.startP99 = pct(startDurations(runs, func(s startSample) time.Duration { return s.reaction }), 0.99)
	return report(doc, startSection, section, startSectionTemplate, makeStartTable(runs, spawn), machine,
		map[string]any{"N": n, "Quiet": scrapeQuiet, "CheckAfter": watchCheckAfter, "Steady": steadyAfter})
}

// minorFaults is the minor page faults of pid so far (/proc/PID/stat), -1 if unknown.
func minorFaults(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3; minflt is field 10
	if i < 0 || len(f) < 8 {
		return -1
	}
	n, err := strconv.ParseInt(f[7], 10, 64)
	if err != nil {
		return -1
	}
	return n
}
