package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestRestartChildInAJob: under restartPolicy Never the kubelet never restarts a sidecar that
// crashed. The proxy's child crashes once while main works; with "restartChild": "OnFailure"
// koordinator starts it again inside the container (restartCount stays 0), main completes, the
// proxy is stopped after it, and the Job completes.
func TestRestartChildInAJob(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-restart")
	// First run: ready, then crash 2 s later; every later run: serve until stopped.
	proxy := `if [ ! -e /tmp/crashed ]; then touch /tmp/crashed ` + readyFile + `; echo proxy: crashing soon; sleep 2; echo proxy: crashing; exit 3; fi
` + serveScript("proxy", 0)
	createJob(t, ns, "restart", 0, podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(wrapped("proxy", `{"stopDeps":["main"],"restartChild":"OnFailure"}`, proxy)),
		wrapped("main", `{"startDeps":["proxy"]}`, workScript("main", 5)),
	))
	waitJobComplete(t, ns, "restart", 2*time.Minute)
	pod := jobPod(t, ns, "restart")
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	expectTerminated(t, pod, "proxy", 0, 0)
	expectTerminated(t, pod, "main", 0, 0)

	p, m := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "main")
	crashed := p.first(t, "proxy: crashing")
	restarting := p.first(t, "child exited; restarting it", "code", float64(3))
	if n := len(p.matching("child started")); n != 2 {
		t.Errorf("the proxy's child started %d times, want 2", n)
	}
	mainStarted := m.first(t, "child started")
	mainExited := m.first(t, "child exited")
	stop := p.first(t, "stop condition")
	before(t, mainStarted, crashed, "the proxy crashed while main ran")
	// "proxy: crashing" carries the node's capture time (see captureLag): it may be stamped just
	// after the restart koordinator logged.
	if restarting.Before(crashed.Add(-captureLag)) {
		t.Errorf("the restart was logged %s before the crash", crashed.Sub(restarting))
	}
	before(t, restarting, mainExited, "the proxy was restarted while main still ran")
	before(t, mainExited, stop, "the proxy was stopped after main exited")
}
