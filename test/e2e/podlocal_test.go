package e2e

// Scenarios of the pod-local channel (issue 7, item 4) besides the deletion, which is
// TestPodDeletionSidecarOutlivesMain: a state file that says "exited" must stop a sidecar only
// when the kubelet will not run the container again (judged by the pod's and the container's
// restart policy and rules), a stop dependency that publishes no state file still stops the
// sidecar through the API, and a state file that is garbage or a symlink is ignored with a
// warning and never stops anything.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// withEnv returns c with the environment variable name=value added.
func withEnv(c corev1.Container, name, value string) corev1.Container {
	c.Env = append(append([]corev1.EnvVar(nil), c.Env...), corev1.EnvVar{Name: name, Value: value})
	return c
}

// debugLog makes c's koordinator log at debug level: every state file and pod state it sees.
func debugLog(c corev1.Container) corev1.Container {
	return withEnv(c, "KOORDINATOR_LOG_LEVEL", "debug")
}

// withWork mounts the pod's "work" emptyDir (see workVolume) at /work in c.
func withWork(c corev1.Container) corev1.Container {
	c.VolumeMounts = append(append([]corev1.VolumeMount(nil), c.VolumeMounts...), corev1.VolumeMount{Name: "work", MountPath: "/work"})
	return c
}

// workVolume adds the "work" emptyDir to spec: it outlives a container's restarts.
func workVolume(spec corev1.PodSpec) corev1.PodSpec {
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	return spec
}

// twoRuns is a main container's command that exits first on its first run and second on every
// later one, telling them apart by a marker file in /work (withWork). Each run works 1 s.
func twoRuns(first, second int) string {
	return fmt.Sprintf(`if [ -e /work/ran-once ]; then
  echo main: second run, exit %[2]d; sleep 1; exit %[2]d
fi
touch /work/ran-once
echo main: first run, exit %[1]d; sleep 1; exit %[1]d
`, first, second)
}

// stateFileLines are a wrapper's debug lines about dep's state file with the given state
// ("running", "exited", "none").
func stateFileLines(l ctrLog, dep, state string) []entry {
	return l.matching("state file", "dependency", dep, "state", state)
}

// stateFileExit returns the first debug line saying dep's state file showed an exit with code.
func stateFileExit(l ctrLog, dep string, code int) (entry, bool) {
	for _, e := range stateFileLines(l, dep, "exited") {
		if e.Fields["code"] == float64(code) {
			return e, true
		}
	}
	return entry{}, false
}

// retriedMainWithSidecar runs a pod whose main exits twice (twoRuns) behind koordinator and a
// sidecar ({"stopDeps":["main"]}, debug log) with the pod-local channel on (the default), waits
// for a terminal phase and checks what both retry scenarios share: main ran twice (restartCount
// 1, lastState the first code, final state the second), the sidecar's child ran once throughout
// and exited 0, the API showed main's first exit with the sidecar running, the sidecar read the
// first exit from main's state file and did not stop on it, and its one stop condition came
// only after main's second run had exited.
func retriedMainWithSidecar(t *testing.T, prefix string, podPolicy corev1.RestartPolicy, main corev1.Container, first, second int) (*corev1.Pod, ctrLog, ctrLog) {
	t.Helper()
	ns := newNamespace(t, prefix)
	rec := record(t, ns, "retry")
	dumpOnFailure(t, ns, rec)
	applyFile(t, ns, "deploy/rbac.yaml")
	spec := workVolume(podSpec(podPolicy, 30, nil,
		debugLog(readyOnFile(wrapped("sidecar", `{"stopDeps":["main"]}`, serveScript("sidecar", 0)))),
		withWork(main),
	))
	created := time.Now()
	createPod(t, ns, "retry", spec)
	pod := waitPod(t, ns, "retry", 2*time.Minute, "a terminal phase", podTerminal)

	// From the API.
	expectTerminated(t, pod, "main", int32(second), 1)
	if last := mustStatus(t, pod, "main").LastTerminationState.Terminated; last == nil || last.ExitCode != int32(first) {
		t.Errorf("main's lastState %+v, want terminated with exit code %d", mustStatus(t, pod, "main").LastTerminationState, first)
	}
	expectTerminated(t, pod, "sidecar", 0, 0)
	sawFirstExit := false
	for _, p := range rec.all() {
		m, s := ctrStatus(p, "main"), ctrStatus(p, "sidecar")
		if m == nil || s == nil || m.RestartCount != 0 {
			continue
		}
		if term := m.State.Terminated; term != nil && term.ExitCode == int32(first) ||
			m.State.Waiting != nil && m.LastTerminationState.Terminated != nil && m.LastTerminationState.Terminated.ExitCode == int32(first) {
			sawFirstExit = true
			if s.State.Running == nil || s.RestartCount != 0 {
				t.Errorf("the API showed main's first exit (%d) with the sidecar not running: %+v", first, s.State)
			}
		}
	}
	if !sawFirstExit {
		t.Errorf("the API never showed main's first exit (%d)", first)
	}

	// From the logs.
	ml, sl := readLog(ns, "retry", "main"), readLog(ns, "retry", "sidecar")
	exits, starts := ml.matching("child exited"), ml.matching("child started")
	if len(exits) != 2 || len(starts) != 2 {
		t.Fatalf("main's child started %d and exited %d times, want 2 and 2 (one per run)", len(starts), len(exits))
	}
	if c1, c2 := exits[0].Fields["code"], exits[1].Fields["code"]; c1 != float64(first) || c2 != float64(second) {
		t.Errorf("main's children exited %v then %v, want %d then %d", c1, c2, first, second)
	}
	stops := sl.matching("stop condition")
	if len(stops) != 1 {
		t.Fatalf("the sidecar logged %d stop conditions, want 1", len(stops))
	}
	tl := newTimeline(created)
	tl.add("main: child started (1st run)", starts[0].At)
	tl.add(fmt.Sprintf("main: child exited %d (1st run)", first), exits[0].At)
	tl.add("main: child started (2nd run)", starts[1].At)
	tl.add(fmt.Sprintf("main: child exited %d (2nd run)", second), exits[1].At)
	seenFirst, ok := stateFileExit(sl, "main", first)
	if ok {
		tl.add(fmt.Sprintf("sidecar: state file: main exited %d", first), seenFirst.At)
	} else {
		t.Errorf("the sidecar never read main's exit %d from its state file (no debug line)", first)
	}
	if e, ok := stateFileExit(sl, "main", second); ok {
		tl.add(fmt.Sprintf("sidecar: state file: main exited %d", second), e.At)
	}
	tl.add("sidecar: stop condition", stops[0].At)
	tl.add("sidecar: sidecar: stopping", sl.first(t, "sidecar: stopping"))
	tl.log(t)
	if m := sl.matching("stop dependencies exited"); len(m) == 1 {
		t.Logf("the sidecar's stop: stop dependencies exited %v, from state files %v; %.3fs after main's second exit",
			m[0].Fields["exited"], m[0].Fields["fromStateFiles"], stops[0].At.Sub(exits[1].At).Seconds())
	}
	if ok {
		afterExit(t, exits[0].At, seenFirst.At, "the sidecar read main's first exit after it happened")
		before(t, seenFirst.At, stops[0].At, "the sidecar kept running after reading main's first exit from its state file")
	}
	afterExit(t, exits[1].At, stops[0].At, "the sidecar's stop condition held only after main's second run exited")
	before(t, starts[1].At, stops[0].At, "the sidecar's stop condition held after main's second run started")
	if n := len(sl.matching("child started")); n != 1 {
		t.Errorf("the sidecar's child started %d times, want 1", n)
	}
	return pod, ml, sl
}

// TestPodLocalRetriedMain: under restartPolicy OnFailure main exits 1, is restarted, and exits 0.
// The pod is TestRetriedMainKeepsSidecar's; what this adds is the proof, from the sidecar's debug
// log, that it read "exited 1" from main's state file (the channel is on by default) and kept
// running on it: under OnFailure exit 1 is retried. It stops only after the exit 0.
func TestPodLocalRetriedMain(t *testing.T) {
	parallel(t)
	begin := time.Now()
	pod, _, _ := retriedMainWithSidecar(t, "e2e-local-retry", corev1.RestartPolicyOnFailure,
		wrapped("main", `{"startDeps":["sidecar"]}`, twoRuns(1, 0)), 1, 0)
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	t.Logf("scenario took %s", time.Since(begin).Round(time.Millisecond))
}

// TestPodLocalRestartRule: main has its own restartPolicy Never and a rule restarting it on exit
// code 42, in a pod with restartPolicy OnFailure. Its first run exits 42: the kubelet (the test
// node, by the same rule) restarts it, and the sidecar, which reads the 42 from main's state
// file, keeps running. Its second run exits 3: final under Never (the pod's OnFailure does not
// apply to a container with its own policy), so the sidecar stops, and the pod fails.
func TestPodLocalRestartRule(t *testing.T) {
	parallel(t)
	begin := time.Now()
	never := corev1.ContainerRestartPolicyNever
	main := wrapped("main", `{"startDeps":["sidecar"]}`, twoRuns(42, 3))
	main.RestartPolicy = &never
	main.RestartPolicyRules = []corev1.ContainerRestartRule{{
		Action: corev1.ContainerRestartRuleActionRestart,
		ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{
			Operator: corev1.ContainerRestartRuleOnExitCodesOpIn,
			Values:   []int32{42},
		},
	}}
	pod, _, _ := retriedMainWithSidecar(t, "e2e-local-rule", corev1.RestartPolicyOnFailure, main, 42, 3)
	if pod.Status.Phase != corev1.PodFailed {
		t.Errorf("pod phase %s, want Failed (main exited 3 for good)", pod.Status.Phase)
	}
	t.Logf("scenario took %s", time.Since(begin).Round(time.Millisecond))
}

// TestPodLocalUnwrappedStopDep: the sidecar's stop dependency is a plain busybox container, not
// behind koordinator, so nothing publishes its state file. The sidecar, watching for that file
// in vain, still stops once the API shows main exited for good.
func TestPodLocalUnwrappedStopDep(t *testing.T) {
	parallel(t)
	begin := time.Now()
	ns := coordinatedNamespace(t, "e2e-local-unwrapped")
	createPod(t, ns, "unwrapped", podSpec(corev1.RestartPolicyNever, 30, nil,
		debugLog(readyOnFile(wrapped("sidecar", `{"stopDeps":["main"]}`, serveScript("sidecar", 0)))),
		plain("main", workScript("main", 4)),
	))
	pod := waitPod(t, ns, "unwrapped", 2*time.Minute, "a terminal phase", podTerminal)

	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	expectTerminated(t, pod, "main", 0, 0)
	expectTerminated(t, pod, "sidecar", 0, 0)

	ml, sl := readLog(ns, "unwrapped", "main"), readLog(ns, "unwrapped", "sidecar")
	tl := newTimeline(begin)
	tl.add("main: main: working", ml.first(t, "main: working"))
	mainDone := tl.add("main: main: done", ml.first(t, "main: done"))
	sideStarted := tl.add("sidecar: child started", sl.first(t, "child started"))
	watching := tl.add("sidecar: watching the stop dependencies' state files", sl.first(t, "watching the stop dependencies' state files"))
	stopCond := tl.add("sidecar: stop condition", sl.first(t, "stop condition"))
	tl.add("sidecar: sidecar: stopping", sl.first(t, "sidecar: stopping"))
	tl.log(t)
	before(t, watching, mainDone, "the sidecar watched for main's state file while main worked")
	before(t, sideStarted, mainDone, "the sidecar's child ran while main worked")
	// main's "done" line is its last before it exits; the API shows the exit after that.
	before(t, mainDone, stopCond, "the sidecar's stop condition held after main was done")
	m := sl.matching("stop dependencies exited")
	if len(m) != 1 {
		t.Fatalf("the sidecar logged %d \"stop dependencies exited\" lines, want 1", len(m))
	}
	if got := m[0].Fields["fromStateFiles"]; got != nil {
		if l, ok := got.([]any); !ok || len(l) > 0 {
			t.Errorf("the sidecar's stop came from state files %v; main publishes none", got)
		}
	}
	if n := len(sl.matching("state file")); n != 0 {
		t.Errorf("the sidecar read %d states from main's state file; main publishes none", n)
	}
	if n := len(sl.matching("stop condition")); n != 1 {
		t.Errorf("the sidecar logged %d stop conditions, want 1", n)
	}
	t.Logf("the sidecar's stop condition held %.3fs after main's last line (through the API); scenario took %s",
		stopCond.Sub(mainDone).Seconds(), time.Since(begin).Round(time.Millisecond))
}

// vandalScript is a main container's command that waits for its own koordinator to publish
// "running" in /koordinator/.state/<name>, then spoils that file with spoil, says "<name>:
// spoiled" when it took, works 3 s and exits 0.
func vandalScript(name, spoil, check string) string {
	return fmt.Sprintf(`f=/koordinator/.state/%[1]s
echo %[1]s: working
until grep -q '"state":"running"' "$f" 2>/dev/null; do sleep 0.1; done
%[2]s
if %[3]s; then echo %[1]s: spoiled; fi
sleep 3
echo %[1]s: done
`, name, spoil, check)
}

// TestPodLocalBadStateFile: while main runs, its own state file is spoiled from inside the pod,
// through the shared emptyDir mounted at /koordinator. Two pairs in one pod: main-g overwrites
// its file with garbage, main-s replaces its file with a symlink to /etc/passwd; side-g and
// side-s wait for them ({"stopDeps":[...]}). Each sidecar logs a warning naming the file, does
// not stop while its main runs, and stops once its main has really exited (its koordinator's
// rename replaces the spoiled file with the real state).
func TestPodLocalBadStateFile(t *testing.T) {
	parallel(t)
	begin := time.Now()
	ns := coordinatedNamespace(t, "e2e-local-bad-file")
	createPod(t, ns, "bad-file", podSpec(corev1.RestartPolicyNever, 30, nil,
		debugLog(readyOnFile(wrapped("side-g", `{"stopDeps":["main-g"]}`, serveScript("side-g", 0)))),
		wrapped("main-g", `{"startDeps":["side-g"]}`, vandalScript("main-g",
			`printf 'this is no state file\n' > "$f"`, `grep -q 'no state file' "$f"`)),
		debugLog(readyOnFile(wrapped("side-s", `{"stopDeps":["main-s"]}`, serveScript("side-s", 0)))),
		wrapped("main-s", `{"startDeps":["side-s"]}`, vandalScript("main-s",
			`ln -sf /etc/passwd "$f"`, `[ -L "$f" ]`)),
	))
	pod := waitPod(t, ns, "bad-file", 2*time.Minute, "a terminal phase", podTerminal)

	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	for _, c := range []string{"main-g", "side-g", "main-s", "side-s"} {
		expectTerminated(t, pod, c, 0, 0)
	}

	tl := newTimeline(begin)
	for _, pair := range []struct{ main, side, want string }{
		{"main-g", "side-g", "not a state file"},
		{"main-s", "side-s", "is a symlink"},
	} {
		ml, sl := readLog(ns, "bad-file", pair.main), readLog(ns, "bad-file", pair.side)
		tl.add(pair.main+": spoiled", ml.first(t, pair.main+": spoiled"))
		mainExited := tl.add(pair.main+": child exited", ml.first(t, "child exited"))
		warnings := sl.matching("ignoring a pod-local state file")
		if len(warnings) != 1 {
			t.Errorf("%s logged %d warnings about state files, want 1 (about %s's)", pair.side, len(warnings), pair.main)
		}
		if len(warnings) > 0 {
			w := warnings[0]
			tl.add(pair.side+": ignoring a pod-local state file", w.At)
			msg := fmt.Sprint(w.Fields["error"])
			t.Logf("%s's warning (level %v): %s: %s", pair.side, w.Fields["level"], w.Msg, msg)
			if w.Fields["level"] != "warn" || !strings.Contains(msg, fmt.Sprintf("state file %q", pair.main)) || !strings.Contains(msg, pair.want) {
				t.Errorf("%s's warning %q (level %v), want a warning about state file %q saying %q", pair.side, msg, w.Fields["level"], pair.main, pair.want)
			}
			// (Not compared with "spoiled": that line is timed when the node received it, after
			// the check that follows the spoiling; the warning's content shows what it is about.)
			before(t, w.At, mainExited, pair.side+" warned about the spoiled file while "+pair.main+" still ran")
		}
		stops := sl.matching("stop condition")
		if len(stops) != 1 {
			t.Errorf("%s logged %d stop conditions, want 1", pair.side, len(stops))
		}
		if len(stops) > 0 {
			tl.add(pair.side+": stop condition", stops[0].At)
			afterExit(t, mainExited, stops[0].At, pair.side+" stopped only after "+pair.main+" really exited")
		}
		// The channel works again once the spoiled file is replaced: main's koordinator renames
		// its real exit over it, before it exits and so before the API can show that exit.
		if e, ok := stateFileExit(sl, pair.main, 0); ok {
			tl.add(pair.side+": state file: "+pair.main+" exited 0", e.At)
		} else {
			t.Errorf("%s never read %s's real exit from its state file after the file had been spoiled", pair.side, pair.main)
		}
		if m := sl.matching("stop dependencies exited"); len(m) == 1 {
			t.Logf("%s's stop: from state files %v, %.3fs after %s's exit", pair.side, m[0].Fields["fromStateFiles"],
				m[0].At.Sub(mainExited).Seconds(), pair.main)
		}
		if n := len(ml.containing("cannot publish on the pod-local channel")); n != 0 {
			t.Errorf("%s's koordinator could not publish over its spoiled state file", pair.main)
		}
		if n := len(sl.matching("child started")); n != 1 {
			t.Errorf("%s's child started %d times, want 1", pair.side, n)
		}
	}
	tl.log(t)
	t.Logf("scenario took %s", time.Since(begin).Round(time.Millisecond))
}
