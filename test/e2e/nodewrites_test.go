package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestWhatTheNodeWrites checks, on either node, the status writes koordinator's rules rest on,
// as the real kubelet v1.37.2 made them here (docs/real-node.md): a pod under OnFailure whose
// main exits 1, is restarted and exits 0, beside a container that exits 0 at once. No
// koordinator: this is the node's behaviour alone.
//   - A first restart is immediate: main goes from terminated (restartCount 0) to running
//     (restartCount 1, lastState the exit) without a waiting/CrashLoopBackOff write between.
//   - The terminal phase comes in a write of its own, after the one that first shows every
//     container terminated for good.
func TestWhatTheNodeWrites(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-writes")
	applyFile(t, ns, "deploy/rbac.yaml") // podSpec names its ServiceAccount
	rec := record(t, ns, "writes")
	dumpOnFailure(t, ns, rec)
	spec := workVolume(podSpec(corev1.RestartPolicyOnFailure, 30, nil,
		withWork(plain("main", twoRuns(1, 0))),
		plain("side", "echo side: done"),
	))
	createPod(t, ns, "writes", spec)
	final := waitPod(t, ns, "writes", 2*time.Minute, "a terminal phase", podTerminal)
	if final.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("phase %s, want Succeeded", final.Status.Phase)
	}
	expectTerminated(t, final, "main", 0, 1)

	writes := rec.all()
	sawFirstExit, sawRestart := false, false
	for i, p := range writes {
		m := ctrStatus(p, "main")
		if m == nil {
			continue
		}
		switch {
		case m.RestartCount == 0 && m.State.Terminated != nil:
			sawFirstExit = true
		case m.RestartCount == 0 && m.State.Waiting != nil && sawFirstExit:
			t.Errorf("write %d: main waiting (%s) before its first restart; the kubelet restarts at once", i, m.State.Waiting.Reason)
		case m.RestartCount == 1 && !sawRestart:
			sawRestart = true
			if m.State.Waiting != nil && m.State.Waiting.Reason == "CrashLoopBackOff" {
				t.Errorf("write %d: main in CrashLoopBackOff at its first restart", i)
			}
			if last := m.LastTerminationState.Terminated; last == nil || last.ExitCode != 1 {
				t.Errorf("write %d: main restarted with lastState %+v, want terminated with exit 1", i, m.LastTerminationState)
			}
		}
	}
	if !sawFirstExit {
		t.Error("no write showed main's first exit (terminated, restartCount 0)")
	}
	if !sawRestart {
		t.Error("no write showed main restarted (restartCount 1)")
	}

	// The first write showing both containers done for good, and the first with a terminal phase.
	allDone, terminal := -1, -1
	for i, p := range writes {
		m, s := ctrStatus(p, "main"), ctrStatus(p, "side")
		if allDone < 0 && m != nil && s != nil && m.RestartCount == 1 && m.State.Terminated != nil && s.State.Terminated != nil {
			allDone = i
		}
		if terminal < 0 && podTerminal(p) {
			terminal = i
		}
	}
	switch {
	case allDone < 0 || terminal < 0:
		t.Errorf("writes never showed every container done (%d) or a terminal phase (%d)", allDone, terminal)
	case terminal <= allDone:
		t.Errorf("the terminal phase came in write %d with the last exit (write %d); the kubelet writes it separately, after", terminal, allDone)
	default:
		t.Logf("every container done in write %d of %d, terminal phase in write %d", allDone, len(writes), terminal)
	}
}
