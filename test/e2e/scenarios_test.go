package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// TestStartDepsChain: c waits for b, b for a (startDeps), each Ready through an exec probe once
// its command touched a file; b is stopped after c, a after b (stopDeps). The children start in
// the order a, b, c and stop in the order c, b, a; the Job completes.
func TestStartDepsChain(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-chain")
	created := time.Now()
	createJob(t, ns, "chain", 0, podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(wrapped("a", `{"stopDeps":["b"]}`, serveScript("a", 0))),
		readyOnFile(wrapped("b", `{"startDeps":["a"],"stopDeps":["c"]}`, serveScript("b", 0))),
		wrapped("c", `{"startDeps":["b"]}`, workScript("c", 1)),
	))
	waitJobComplete(t, ns, "chain", 2*time.Minute)
	pod := jobPod(t, ns, "chain")

	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	fa := expectTerminated(t, pod, "a", 0, 0).FinishedAt
	fb := expectTerminated(t, pod, "b", 0, 0).FinishedAt
	fc := expectTerminated(t, pod, "c", 0, 0).FinishedAt
	if fb.Before(&fc) || fa.Before(&fb) {
		t.Errorf("finishedAt a %s, b %s, c %s: want c ≤ b ≤ a", fa, fb, fc)
	}

	a, b, c := readLog(ns, pod.Name, "a"), readLog(ns, pod.Name, "b"), readLog(ns, pod.Name, "c")
	tl := newTimeline(created)
	aStarted := tl.add("a: child started", a.first(t, "child started"))
	aReady := tl.add("a: a: ready", a.first(t, "a: ready"))
	bSawA := tl.add("b: dependency ready (a)", b.first(t, "dependency ready", "dependency", "a"))
	bStarted := tl.add("b: child started", b.first(t, "child started"))
	bReady := tl.add("b: b: ready", b.first(t, "b: ready"))
	cSawB := tl.add("c: dependency ready (b)", c.first(t, "dependency ready", "dependency", "b"))
	cStarted := tl.add("c: child started", c.first(t, "child started"))
	cExited := tl.add("c: child exited", c.first(t, "child exited"))
	bStop := tl.add("b: stop condition", b.first(t, "stop condition"))
	bExited := tl.add("b: child exited", b.first(t, "child exited"))
	aStop := tl.add("a: stop condition", a.first(t, "stop condition"))
	tl.add("a: child exited", a.first(t, "child exited"))
	tl.log(t)

	before(t, aStarted, aReady, "a's child said ready after it started")
	before(t, aReady, bSawA, "b saw a Ready after a's child was ready")
	before(t, bSawA, bStarted, "b's child started after a was Ready")
	before(t, bReady, cSawB, "c saw b Ready after b's child was ready")
	before(t, cSawB, cStarted, "c's child started after b was Ready")
	before(t, aStarted, bStarted, "start order a before b")
	before(t, bStarted, cStarted, "start order b before c")
	afterExit(t, cExited, bStop, "b's stop condition held after c exited")
	afterExit(t, bExited, aStop, "a's stop condition held after b exited")
}

// TestStopDepsTwoMains: a sidecar with {"stopDeps":["main1","main2"]} keeps running after main1
// exits and is stopped only once main2 (which works 3 s longer) has exited too.
func TestStopDepsTwoMains(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-two-mains")
	created := time.Now()
	createJob(t, ns, "two-mains", 0, podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(wrapped("sidecar", `{"stopDeps":["main1","main2"]}`, serveScript("sidecar", 0))),
		wrapped("main1", `{"startDeps":["sidecar"]}`, workScript("main1", 1)),
		wrapped("main2", `{"startDeps":["sidecar"]}`, workScript("main2", 4)),
	))
	waitJobComplete(t, ns, "two-mains", 2*time.Minute)
	pod := jobPod(t, ns, "two-mains")

	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	f1 := expectTerminated(t, pod, "main1", 0, 0).FinishedAt
	f2 := expectTerminated(t, pod, "main2", 0, 0).FinishedAt
	fs := expectTerminated(t, pod, "sidecar", 0, 0).FinishedAt
	if fs.Before(&f1) || fs.Before(&f2) {
		t.Errorf("finishedAt sidecar %s, main1 %s, main2 %s: the sidecar finished before a main", fs, f1, f2)
	}

	side, m1, m2 := readLog(ns, pod.Name, "sidecar"), readLog(ns, pod.Name, "main1"), readLog(ns, pod.Name, "main2")
	tl := newTimeline(created)
	m1Exited := tl.add("main1: child exited", m1.first(t, "child exited"))
	m2Exited := tl.add("main2: child exited", m2.first(t, "child exited"))
	stopCond := tl.add("sidecar: stop condition", side.first(t, "stop condition"))
	tl.add("sidecar: stopping the child", side.first(t, "stopping the child"))
	tl.add("sidecar: sidecar: stopping", side.first(t, "sidecar: stopping"))
	tl.log(t)
	before(t, m1Exited, m2Exited, "main1 (1 s of work) exited before main2 (4 s)")
	afterExit(t, m2Exited, stopCond, "the sidecar's stop condition held only after main2 exited")
	if n := len(side.matching("stop condition")); n != 1 {
		t.Errorf("the sidecar logged %d stop conditions, want 1", n)
	}
	if m := side.matching("stop dependencies exited"); len(m) > 0 {
		if got := fmt.Sprint(m[0].Fields["exited"]); !strings.Contains(got, "main1") || !strings.Contains(got, "main2") {
			t.Errorf("stop dependencies exited: %s, want main1 and main2", got)
		}
	}
}

// TestNativeSidecarStartDep: native sidecars (init containers with restartPolicy Always), one
// wrapped by koordinator and one not, are main's start dependencies; main's child starts only
// once both are Ready, and the Job completes (the kubelet stops native sidecars itself).
func TestNativeSidecarStartDep(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-native")
	created := time.Now()
	createJob(t, ns, "native", 0, podSpec(corev1.RestartPolicyNever, 30,
		[]corev1.Container{
			nativeSidecar(readyOnFile(wrapped("proxy", "", serveScript("proxy", 1)))),
			nativeSidecar(readyOnFile(plain("plain", serveScript("plain", 2)))),
		},
		wrapped("main", `{"startDeps":["proxy","plain"]}`, workScript("main", 1)),
	))
	waitJobComplete(t, ns, "native", 2*time.Minute)
	pod := jobPod(t, ns, "native")

	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	expectTerminated(t, pod, "main", 0, 0)
	for _, name := range []string{"proxy", "plain"} {
		if cs := mustStatus(t, pod, name); cs.RestartCount != 0 {
			t.Errorf("native sidecar %s restarted %d times", name, cs.RestartCount)
		}
	}

	proxy, pl, main := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "plain"), readLog(ns, pod.Name, "main")
	tl := newTimeline(created)
	tl.add("proxy: child started", proxy.first(t, "child started"))
	proxyReady := tl.add("proxy: proxy: ready", proxy.first(t, "proxy: ready"))
	plainReady := tl.add("plain: plain: ready", pl.first(t, "plain: ready"))
	sawProxy := tl.add("main: dependency ready (proxy)", main.first(t, "dependency ready", "dependency", "proxy"))
	sawPlain := tl.add("main: dependency ready (plain)", main.first(t, "dependency ready", "dependency", "plain"))
	mainStarted := tl.add("main: child started", main.first(t, "child started"))
	mainExited := tl.add("main: child exited", main.first(t, "child exited"))
	proxyStop := tl.add("proxy: proxy: stopping", proxy.first(t, "proxy: stopping"))
	tl.add("plain: plain: stopping", pl.first(t, "plain: stopping"))
	tl.log(t)
	before(t, proxyReady, sawProxy, "main saw the wrapped native sidecar Ready after it was ready")
	before(t, plainReady, sawPlain, "main saw the plain native sidecar Ready after it was ready")
	before(t, sawProxy, mainStarted, "main's child started after proxy was Ready")
	before(t, sawPlain, mainStarted, "main's child started after plain was Ready")
	afterExit(t, mainExited, proxyStop, "the native sidecar was stopped after main exited")
}

// TestStartTimeout: main's start dependency never becomes Ready; after startTimeout (3 s) main's
// koordinator exits 125 with the reason in its log, and main's child never runs.
func TestStartTimeout(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-start-timeout")
	never := wrapped("never", `{"stopDeps":["main"]}`, serveScript("never", 0))
	never.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", "/tmp/never-there"}}},
		PeriodSeconds: 1,
	}
	createPod(t, ns, "timeout", podSpec(corev1.RestartPolicyNever, 30, nil,
		never,
		wrapped("main", `{"startDeps":["never"],"startTimeout":"3s"}`, "echo main: the child ran"),
	))
	pod := waitPod(t, ns, "timeout", 2*time.Minute, "a terminal phase", podTerminal)

	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("pod phase %s, want Failed (main exited 125)", pod.Status.Phase)
	}
	term := expectTerminated(t, pod, "main", 125, 0)
	expectTerminated(t, pod, "never", 0, 0)
	if cs := mustStatus(t, pod, "never"); cs.Ready {
		t.Error("never was Ready")
	}

	main := readLog(ns, "timeout", "main")
	spec := main.first(t, "spec")
	gaveUp := main.matching("startTimeout expired before the start dependencies were Ready")
	if len(gaveUp) != 1 {
		t.Fatalf("main's log has %d startTimeout lines, want 1", len(gaveUp))
	}
	e := gaveUp[0]
	t.Logf("main gave up %.3fs after its spec line (startTimeout 3s); container exit %d at %s", e.At.Sub(spec).Seconds(), term.ExitCode, term.FinishedAt)
	// startTimeout counts from the process's start, a moment before its first line.
	if waited := e.At.Sub(spec); waited < 2500*time.Millisecond || waited > 10*time.Second {
		t.Errorf("main gave up %s after it started, want about startTimeout (3s)", waited)
	}
	if got := fmt.Sprint(e.Fields["pending"]); !strings.Contains(got, "never") {
		t.Errorf("the startTimeout line names pending %s, want never", got)
	}
	if code, _ := e.Fields["code"].(float64); code != 125 {
		t.Errorf("the startTimeout line has code %v, want 125", e.Fields["code"])
	}
	if main.has("child started") || len(main.containing("main: the child ran")) > 0 {
		t.Error("main's child ran")
	}
}

// TestRetriedMainKeepsSidecar: under restartPolicy OnFailure main fails once (exit 1), is
// restarted by the kubelet and then succeeds. The sidecar ({"stopDeps":["main"]}) keeps running
// through the first exit and is stopped only after the retry succeeded.
func TestRetriedMainKeepsSidecar(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-onfailure")
	rec := record(t, ns, "retry")
	dumpOnFailure(t, ns, rec)
	applyFile(t, ns, "deploy/rbac.yaml")
	main := wrapped("main", `{"startDeps":["sidecar"]}`, `if [ -e /work/failed-once ]; then
  echo main: second run succeeds; sleep 1; exit 0
fi
touch /work/failed-once
echo main: first run fails; sleep 1; exit 1
`)
	main.VolumeMounts = append(main.VolumeMounts, corev1.VolumeMount{Name: "work", MountPath: "/work"})
	spec := podSpec(corev1.RestartPolicyOnFailure, 30, nil,
		readyOnFile(wrapped("sidecar", `{"stopDeps":["main"]}`, serveScript("sidecar", 0))),
		main,
	)
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	created := time.Now()
	createPod(t, ns, "retry", spec)
	pod := waitPod(t, ns, "retry", 2*time.Minute, "a terminal phase", podTerminal)

	// From the API: the final state, then what was written while main was retried.
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	expectTerminated(t, pod, "main", 0, 1)
	if last := mustStatus(t, pod, "main").LastTerminationState.Terminated; last == nil || last.ExitCode != 1 {
		t.Errorf("main's lastState %+v, want terminated with exit code 1", mustStatus(t, pod, "main").LastTerminationState)
	}
	expectTerminated(t, pod, "sidecar", 0, 0)
	sawFailure, sawRetry := false, false
	for _, p := range rec.all() {
		m, s := ctrStatus(p, "main"), ctrStatus(p, "sidecar")
		if m == nil || s == nil {
			continue
		}
		sidecarUp := s.State.Running != nil && s.RestartCount == 0
		failed := (m.State.Terminated != nil && m.State.Terminated.ExitCode == 1) ||
			(m.State.Waiting != nil && m.LastTerminationState.Terminated != nil && m.LastTerminationState.Terminated.ExitCode == 1)
		if failed && m.RestartCount == 0 {
			if !sidecarUp {
				t.Errorf("the API showed main's failed first run with the sidecar not running: %+v", s.State)
			}
			sawFailure = true
		}
		// (Once the retry's child has exited, the sidecar may stop while main's koordinator still
		// drains, so "main running, sidecar stopped" is fine at the very end.)
		if m.RestartCount == 1 && m.State.Running != nil && sidecarUp && s.Ready {
			sawRetry = true
		}
	}
	if !sawFailure {
		t.Error("the API never showed main's failed first run")
	}
	if !sawRetry {
		t.Error("the API never showed main's retry running with the sidecar running and Ready")
	}

	// From the logs.
	ml, sl := readLog(ns, "retry", "main"), readLog(ns, "retry", "sidecar")
	exits := ml.matching("child exited")
	if len(exits) != 2 {
		t.Fatalf("main's log has %d child exits, want 2 (one per run)", len(exits))
	}
	if c1, c2 := exits[0].Fields["code"], exits[1].Fields["code"]; c1 != 1.0 || c2 != 0.0 {
		t.Errorf("main's children exited %v then %v, want 1 then 0", c1, c2)
	}
	tl := newTimeline(created)
	tl.add("main: child exited (1st run)", exits[0].At)
	tl.add("main: child exited (2nd run)", exits[1].At)
	starts := ml.matching("child started")
	for i, s := range starts {
		tl.add(fmt.Sprintf("main: child started (run %d)", i+1), s.At)
	}
	stops := sl.matching("stop condition")
	if len(stops) != 1 {
		t.Fatalf("the sidecar logged %d stop conditions, want 1", len(stops))
	}
	tl.add("sidecar: stop condition", stops[0].At)
	tl.add("sidecar: koordinator exits", sl.first(t, "koordinator exits"))
	tl.log(t)
	afterExit(t, exits[1].At, stops[0].At, "the sidecar's stop condition held only after main's retry exited")
	if len(starts) == 2 {
		before(t, starts[1].At.Add(time.Second-logSkew), stops[0].At, "the sidecar's stop condition held after main's retry had worked its second")
	} else {
		t.Errorf("main's child started %d times, want 2", len(starts))
	}
	if len(sl.matching("child started")) != 1 {
		t.Error("the sidecar's child was started more than once")
	}
}

// TestPodDeletionSidecarOutlivesMain deletes a pod while main works (issue 7's first scenario).
// The grace period is 30 s; main traps SIGTERM and exits 2 s later; the sidecar
// ({"stopDeps":["main"]}) gets its stop signal only after main exited, and within the grace period.
//
// How long the sidecar holds depends on how it learns of main's exit: the kubelet (and the test
// node) writes no container state while a pod's containers stop, so through the API alone the
// sidecar learns nothing and holds until 2 s before the grace period ends; the pod-local channel
// tells it at once. Both ways run (the second with KOORDINATOR_LOCAL_STATE=off on both wrappers):
// with the channel the sidecar's child hears its stop signal at most 1 s after main's child
// exited, without it only after grace − 5 s and before the grace period ends. "Hears its stop
// signal" is the sidecar child's own line on TERM ("sidecar: stopping", timed when the node
// received it); "main's exit" is the "time" of main's koordinator's "child exited" line. Both
// are on the host's clock. The two figures are logged in one fixed-format line.
func TestPodDeletionSidecarOutlivesMain(t *testing.T) {
	parallel(t)
	var mu sync.Mutex
	var channel, apiOnly time.Duration // stop signal heard after main's exit; 0: not measured
	// Cleanup runs once both subtests have ended.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if channel > 0 && apiOnly > 0 {
			t.Logf("deletion: channel: stop %.3fs after main's exit; api-only: %.3fs after; grace %ds",
				channel.Seconds(), apiOnly.Seconds(), deletionGrace)
		}
	})
	t.Run("pod-local channel", func(t *testing.T) {
		t.Parallel()
		d := podDeletion(t, nil)
		mu.Lock()
		channel = d
		mu.Unlock()
	})
	t.Run("API only", func(t *testing.T) {
		t.Parallel()
		d := podDeletion(t, []corev1.EnvVar{{Name: "KOORDINATOR_LOCAL_STATE", Value: "off"}})
		mu.Lock()
		apiOnly = d
		mu.Unlock()
	})
}

// deletionGrace is the deleted pod's terminationGracePeriodSeconds (issue 7: 30 s).
const deletionGrace = 30

// podDeletion runs the deletion scenario with env added to both wrappers and returns how long
// after main's child exited the sidecar's child heard its stop signal.
func podDeletion(t *testing.T, env []corev1.EnvVar) time.Duration {
	ns := newNamespace(t, "e2e-deletion")
	rec := record(t, ns, "deleted")
	dumpOnFailure(t, ns, rec)
	applyFile(t, ns, "deploy/rbac.yaml")
	apiOnly := len(env) > 0
	sidecar := readyOnFile(wrapped("sidecar", `{"stopDeps":["main"]}`, serveScript("sidecar", 0)))
	main := wrapped("main", `{"startDeps":["sidecar"]}`, `trap 'echo main: got TERM; sleep 2; echo main: exiting; exit 0' TERM
echo main: working
while true; do sleep 1 & wait $!; done
`)
	sidecar.Env = append(sidecar.Env, env...)
	main.Env = append(main.Env, env...)
	createPod(t, ns, "deleted", podSpec(corev1.RestartPolicyNever, deletionGrace, nil, sidecar, main))
	waitLog(t, ns, "deleted", "main", 2*time.Minute, "main: working")

	deleted := time.Now()
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), "deleted", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The node counts the grace period from when it saw the deletion, a moment later: this
	// bound is the stricter one.
	graceEnds := deleted.Add(deletionGrace * time.Second)
	waitPodGone(t, ns, "deleted", 2*time.Minute)
	gone := time.Now()

	// From the API: the node's final status before it removed the pod.
	final := rec.last()
	if final == nil || final.DeletionTimestamp == nil {
		t.Fatalf("no recorded version of the pod being deleted: %+v", final)
	}
	mainTerm := expectTerminated(t, final, "main", 0, 0)
	sideTerm := expectTerminated(t, final, "sidecar", 0, 0)
	if sideTerm.FinishedAt.Before(&mainTerm.FinishedAt) {
		t.Errorf("the sidecar finished at %s, before main at %s", sideTerm.FinishedAt, mainTerm.FinishedAt)
	}
	if final.DeletionTimestamp.Before(&sideTerm.FinishedAt) {
		t.Errorf("the sidecar finished at %s, after the grace period ended (%s)", sideTerm.FinishedAt, final.DeletionTimestamp)
	}
	// The deletion's silence, as the real kubelet keeps it (docs/real-node.md): from the deletion
	// until the final status, every version shows both containers running and the sidecar ready
	// (its readiness probe keeps passing; nobody clears ready on deletion); main's exit shows
	// only in the write that shows the sidecar's too.
	during := 0
	for _, p := range rec.all() {
		if p.DeletionTimestamp == nil {
			continue
		}
		m, sc := ctrStatus(p, "main"), ctrStatus(p, "sidecar")
		if m == nil || sc == nil {
			t.Errorf("resourceVersion %s of the pod being deleted lacks a container status", p.ResourceVersion)
			continue
		}
		if m.State.Terminated != nil || sc.State.Terminated != nil {
			if m.State.Terminated == nil || sc.State.Terminated == nil {
				t.Errorf("during the deletion (resourceVersion %s) the API showed main %+v and the sidecar %+v: one exit before the other", p.ResourceVersion, m.State, sc.State)
			}
			continue
		}
		during++
		if m.State.Running == nil || sc.State.Running == nil || !sc.Ready {
			t.Errorf("during the deletion (resourceVersion %s) the API showed main %+v and the sidecar %+v (ready %v), want both running and the sidecar ready",
				p.ResourceVersion, m.State, sc.State, sc.Ready)
		}
	}
	if during == 0 {
		t.Error("no version of the pod showed it being deleted before its final status")
	}
	t.Logf("%d versions of the pod between the deletion and its final status", during)

	// From the logs.
	ml, sl := readLog(ns, "deleted", "main"), readLog(ns, "deleted", "sidecar")
	tl := newTimeline(deleted)
	tl.add("pod deleted", deleted)
	tl.add("main: termination signal received", ml.first(t, "termination signal received"))
	mainExited := tl.add("main: child exited", ml.first(t, "child exited"))
	tl.add("main: koordinator exits", ml.first(t, "koordinator exits"))
	hold := tl.add("sidecar: holding the stop", sl.first(t, "holding the stop until the stop dependencies exit"))
	stopCond := tl.add("sidecar: stop condition", sl.first(t, "stop condition"))
	stopping := tl.add("sidecar: stopping the child", sl.first(t, "stopping the child"))
	sideTold := tl.add("sidecar: sidecar: stopping", sl.first(t, "sidecar: stopping"))
	sideExit := tl.add("sidecar: koordinator exits", sl.first(t, "koordinator exits"))
	tl.add("grace period ends", graceEnds)
	tl.add("pod gone from the API (seen)", gone)
	tl.log(t)
	reason := sl.matching("stop condition")[0].Fields["reason"]
	heard := sideTold.Sub(mainExited)
	t.Logf("main's child exited %.3fs after the deletion; the sidecar was sent its stop signal %.3fs after that and its child heard it %.3fs after (stop reason %v), %.3fs before the grace period ended",
		mainExited.Sub(deleted).Seconds(), stopping.Sub(mainExited).Seconds(), heard.Seconds(), reason, graceEnds.Sub(sideTold).Seconds())

	if d := mainExited.Sub(deleted); d < 1500*time.Millisecond {
		t.Errorf("main's child exited %s after the deletion, want about 2 s (its TERM trap)", d)
	}
	before(t, hold, mainExited, "the sidecar held its stop while main was still stopping")
	afterExit(t, mainExited, stopCond, "the sidecar's stop condition held after main exited")
	afterExit(t, mainExited, stopping, "the sidecar's child was signalled after main exited")
	// The signal goes out before "stopping the child" is logged, so the stop condition is the
	// bound the child's hearing it must follow.
	before(t, stopCond, sideTold, "the sidecar's child heard its stop signal after the stop condition held")
	before(t, sideExit, graceEnds, "the sidecar stopped within the grace period")
	if n := len(sl.matching("child started")); n != 1 {
		t.Errorf("the sidecar's child started %d times", n)
	}
	if !apiOnly {
		// The channel: main's state file ends the hold.
		if heard > time.Second {
			t.Errorf("with the pod-local channel the sidecar's child heard its stop signal %s after main's child exited, want ≤ 1s", heard)
		}
		if reason != "stop dependencies exited" {
			t.Errorf("with the pod-local channel the sidecar stopped for %v, want \"stop dependencies exited\"", reason)
		}
		if m := sl.matching("stop dependencies exited"); len(m) != 1 || !strings.Contains(fmt.Sprint(m[0].Fields["fromStateFiles"]), "main") {
			t.Errorf("the sidecar's stop dependencies exited lines %+v: want one, with main from its state file", m)
		}
		return heard
	}
	// API only: nothing tells the sidecar before its hold deadline (grace − 2 s after its SIGTERM).
	if early := deleted.Add((deletionGrace - 5) * time.Second); !sideTold.After(early) {
		t.Errorf("API only: the sidecar's child heard its stop signal %.3fs after the deletion, want after grace − 5 s (%ds): the API cannot show main's exit during the deletion",
			sideTold.Sub(deleted).Seconds(), deletionGrace-5)
	}
	before(t, sideTold, graceEnds, "API only: the sidecar's child heard its stop signal before the grace period ended")
	if reason != "grace period ends" {
		t.Errorf("API only: the sidecar stopped for %v, want \"grace period ends\" (its hold deadline)", reason)
	}
	return heard
}

// TestRBACMissing: the namespace has the ServiceAccount and the Role of deploy/rbac.yaml but no
// RoleBinding. main's koordinator logs one actionable "API access forbidden" line naming the
// ServiceAccount within 5 s of its start, never starts its child, and the pod can still be
// deleted.
func TestRBACMissing(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-rbac")
	rec := record(t, ns, "no-rbac")
	dumpOnFailure(t, ns, rec)
	var docs []string
	for _, doc := range testenv.SplitYAML(mustRead(t, "deploy/rbac.yaml")) {
		if !strings.Contains(string(doc), "kind: RoleBinding") {
			docs = append(docs, string(doc))
		}
	}
	kubectl(t, strings.Join(docs, "\n---\n"), "apply", "-n", ns, "-f", "-")
	if _, err := client.RbacV1().RoleBindings(ns).Get(context.Background(), "koordinator", metav1.GetOptions{}); err == nil {
		t.Fatal("a RoleBinding was created")
	}
	createPod(t, ns, "no-rbac", podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(plain("proxy", serveScript("proxy", 0))),
		wrapped("main", `{"startDeps":["proxy"]}`, "echo main: the child ran"),
	))
	line := waitLine(t, ns, "no-rbac", "main", 2*time.Minute, "the API access forbidden line", func(e entry) bool {
		return e.Fields != nil && strings.HasPrefix(e.Msg, "API access forbidden")
	})
	pod := waitPod(t, ns, "no-rbac", time.Minute, "main running", func(p *corev1.Pod) bool {
		cs := ctrStatus(p, "main")
		return cs != nil && cs.State.Running != nil
	})
	startedAt := mustStatus(t, pod, "main").State.Running.StartedAt.Time // whole seconds, rounded down
	main := readLog(ns, "no-rbac", "main")
	spec := main.first(t, "spec")
	t.Logf("forbidden line %.3fs after main's startedAt (whole seconds), %.3fs after koordinator's first line, received %.3fs after it was written",
		line.At.Sub(startedAt).Seconds(), line.At.Sub(spec).Seconds(), line.Recv.Sub(line.At).Seconds())
	if d := line.At.Sub(startedAt); d > 5*time.Second {
		t.Errorf("the forbidden line came %s after the container started, want within 5 s", d)
	}
	if d := line.Recv.Sub(startedAt); d > 5*time.Second {
		t.Errorf("the forbidden line reached the log %s after the container started, want within 5 s", d)
	}
	for _, want := range []string{"ServiceAccount " + ns + "/koordinator", "list, watch", "namespace " + ns} {
		if !strings.Contains(line.Msg, want) {
			t.Errorf("the forbidden line lacks %q: %s", want, line.Msg)
		}
	}
	if n := len(main.containing("forbidden")); n != 1 {
		t.Errorf("main's log mentions forbidden %d times, want one actionable line", n)
	}
	if main.has("Kubernetes API unavailable; retrying") {
		t.Error("a 403 was reported as the API being unavailable")
	}

	// Deleting the pod ends it: the waiting wrapper exits at once, without starting its child.
	if err := client.CoreV1().Pods(ns).Delete(context.Background(), "no-rbac", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, ns, "no-rbac", time.Minute)
	main = readLog(ns, "no-rbac", "main")
	if main.has("child started") || len(main.containing("main: the child ran")) > 0 {
		t.Error("main's child ran without access to the API")
	}
	if final := rec.last(); final != nil {
		expectTerminated(t, final, "main", 143, 0)
	}
}

func mustRead(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
