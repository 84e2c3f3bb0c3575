package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// depScript is a dependency that becomes Ready only while the API server is down: it touches
// the readiness file once the API server's port stops taking connections, so the node's probe
// turns it Ready mid-outage and the status write that says so can only land after the restart.
const depScript = `trap 'echo dep: stopping; exit 0' TERM
command -v nc >/dev/null || { echo "dep: no nc in PATH"; exit 3; }
echo dep: running, Ready once the API server is gone
while nc -w 1 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" -e true 2>/dev/null; do sleep 0.3 & wait $!; done
touch /tmp/ready
echo dep: ready
while true; do sleep 1 & wait $!; done
`

// TestAPIServerOutage stops the shared kube-apiserver for 10 s while main's koordinator waits for
// its start dependency and dep's koordinator runs its child. No child is killed or restarted by
// the outage; dep becomes Ready during it, and once the API is back main starts, exits, dep is
// stopped after it and the Job completes.
//
// It must not overlap any other scenario: it is not parallel (the testing package runs it before
// the parallel scenarios resume) and holds apiOutage for writing.
func TestAPIServerOutage(t *testing.T) {
	apiOutage.Lock()
	defer apiOutage.Unlock()
	ns := coordinatedNamespace(t, "e2e-outage")
	main := wrapped("main", `{"startDeps":["dep"]}`, workScript("main", 1))
	// Debug level logs every pod state it sees: proof it watches its pod before the outage.
	main.Env = append(main.Env, corev1.EnvVar{Name: "KOORDINATOR_LOG_LEVEL", Value: "debug"})
	created := time.Now()
	createJob(t, ns, "outage", 0, podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(wrapped("dep", `{"stopDeps":["main"]}`, depScript)),
		main,
	))
	var pod string
	waitFor(t, time.Minute, "the Job's pod", func() (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=outage"})
		if err != nil || len(pods.Items) == 0 {
			return false, err
		}
		pod = pods.Items[0].Name
		return true, nil
	})

	// Before the outage: dep's child runs, main waits and has seen its pod, and the API shows
	// both containers running and dep not Ready.
	waitLog(t, ns, pod, "dep", 2*time.Minute, "child started")
	waitLog(t, ns, pod, "dep", time.Minute, "dep: running, Ready once the API server is gone")
	waitLog(t, ns, pod, "main", time.Minute, "waiting for start dependencies")
	waitLog(t, ns, pod, "main", time.Minute, "pod state")
	pre := waitPod(t, ns, pod, time.Minute, "dep and main running", func(p *corev1.Pod) bool {
		d, m := ctrStatus(p, "dep"), ctrStatus(p, "main")
		return d != nil && m != nil && d.State.Running != nil && m.State.Running != nil
	})
	if ctrStatus(pre, "dep").Ready || readLog(ns, pod, "dep").has("dep: ready") {
		t.Fatal("dep became ready before the outage")
	}

	stopping := time.Now()
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted { // the test ended early: the scenarios after it need the API
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := cp.StartAPIServer(ctx); err != nil {
				t.Errorf("restarting kube-apiserver: %v", err)
			}
		}
	}()
	down := time.Now()
	t.Logf("kube-apiserver stopped in %s", down.Sub(stopping).Round(time.Millisecond))
	time.Sleep(time.Until(down.Add(10 * time.Second))) // the outage itself
	restarting := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cp.StartAPIServer(ctx)
	restarted = err == nil
	if err != nil {
		t.Fatalf("restarting kube-apiserver: %v", err)
	}
	up := time.Now()
	t.Logf("kube-apiserver ready again %s after the restart began", up.Sub(restarting).Round(time.Millisecond))
	for _, name := range []string{testenv.ControllerManager, testenv.Scheduler} {
		if !cp.Running(name) {
			t.Errorf("%s did not survive the outage", name)
		}
	}

	// When the node's status write saying dep is Ready lands (polled: a watch would add its own
	// reconnection back-off).
	waitPod(t, ns, pod, time.Minute, "dep Ready in the API", func(p *corev1.Pod) bool {
		cs := ctrStatus(p, "dep")
		return cs != nil && (cs.Ready || cs.State.Terminated != nil)
	})
	apiReady := time.Now()

	complete := waitJobComplete(t, ns, "outage", 2*time.Minute)
	p, err := client.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// From the API: nothing restarted, everything exited 0.
	if p.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", p.Status.Phase)
	}
	expectTerminated(t, p, "dep", 0, 0)
	expectTerminated(t, p, "main", 0, 0)

	// From the logs.
	dl, ml := readLog(ns, pod, "dep"), readLog(ns, pod, "main")
	tl := newTimeline(created)
	tl.add("outage begins", stopping)
	tl.add("kube-apiserver gone", down)
	tl.add("kube-apiserver restarting", restarting)
	tl.add("kube-apiserver ready", up)
	tl.add("Job Complete (seen)", complete)
	depStarted := tl.add("dep: child started", dl.first(t, "child started"))
	depReady := tl.add("dep: dep: ready", dl.first(t, "dep: ready"))
	sawDep := tl.add("main: dependency ready (dep)", ml.first(t, "dependency ready", "dependency", "dep"))
	mainStarted := tl.add("main: child started", ml.first(t, "child started"))
	mainExited := tl.add("main: child exited", ml.first(t, "child exited"))
	depStop := tl.add("dep: stop condition", dl.first(t, "stop condition"))
	depExited := tl.add("dep: child exited", dl.first(t, "child exited"))
	for _, l := range []ctrLog{dl, ml} {
		for _, e := range l.matching("Kubernetes API unavailable; retrying") {
			tl.add(l.name+": Kubernetes API unavailable; retrying", e.At)
		}
	}
	tl.add("API shows dep Ready (seen)", apiReady)
	tl.log(t)
	t.Logf("the API showed dep Ready %.3fs after kube-apiserver was ready again; main acted on it %.3fs later",
		apiReady.Sub(up).Seconds(), sawDep.Sub(apiReady).Seconds())

	before(t, depStarted, stopping, "dep's child was running before the outage")
	before(t, stopping, depReady, "dep became ready during the outage (after it began)")
	before(t, depReady, restarting, "dep became ready during the outage (before it ended)")
	before(t, restarting, sawDep, "main saw dep Ready only once the API was back")
	before(t, sawDep, mainStarted, "main's child started after dep was Ready")
	afterExit(t, mainExited, depStop, "dep's stop condition held after main exited")
	before(t, up, depExited, "dep's child ran through the outage")
	for _, l := range []ctrLog{dl, ml} {
		if n := len(l.matching("spec")); n != 1 {
			t.Errorf("%s's koordinator started %d times", l.name, n)
		}
		if n := len(l.matching("child started")); n != 1 {
			t.Errorf("%s's child started %d times", l.name, n)
		}
		for _, e := range l.matching("child exited") {
			if e.At.Before(up) {
				t.Errorf("%s's child exited at %s, during the outage", l.name, e.At.Format(time.StampMicro))
			}
		}
	}
	if !dl.has("Kubernetes API unavailable; retrying") && !ml.has("Kubernetes API unavailable; retrying") {
		t.Error("no wrapper logged the outage")
	}
}
