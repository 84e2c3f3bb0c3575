package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/test/node"
)

// TestJobExample applies deploy/rbac.yaml and deploy/job-example.yaml as they
// are: the Job completes; main started only after the proxy was Ready; the
// proxy was stopped after main exited plus stopDelay (1 s); both exit 0.
func TestJobExample(t *testing.T) {
	ns := newNamespace(t, "e2e-job")
	created := time.Now()
	applyFile(t, ns, "deploy/rbac.yaml")
	applyFile(t, ns, "deploy/job-example.yaml")
	const job = "koordinator-example"

	complete := waitJobComplete(t, ns, job, 2*time.Minute)
	pod := jobPod(t, ns, job)
	failed := true
	defer func() {
		if failed {
			dumpPod(t, pod)
		}
	}()

	// From the API: the pod succeeded, every container exited 0.
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	if len(statuses) != 3 {
		t.Fatalf("%d container statuses, want 3 (koordinator, main, proxy)", len(statuses))
	}
	if names := []string{pod.Status.ContainerStatuses[0].Name, pod.Status.ContainerStatuses[1].Name}; !sort.StringsAreSorted(names) {
		t.Errorf("containerStatuses not sorted by name: %v", names)
	}
	for _, cs := range statuses {
		term := cs.State.Terminated
		if term == nil || term.ExitCode != 0 || term.Reason != "Completed" || !strings.HasPrefix(term.ContainerID, containerIDScheme()) {
			t.Errorf("container %s: state %+v, want terminated with exit 0, reason Completed", cs.Name, cs.State)
		}
		if cs.RestartCount != 0 {
			t.Errorf("container %s restarted %d times", cs.Name, cs.RestartCount)
		}
	}

	// From the logs.
	mainLog := nd.LogLines(ns, pod.Name, "main")
	proxyLog := nd.LogLines(ns, pod.Name, "proxy")
	type point struct {
		what string
		at   time.Time
	}
	var timeline []point
	must := func(container string, lines []node.LogLine, what string, match func(string, map[string]any) bool) time.Time {
		t.Helper()
		at, _, ok := findLine(lines, match)
		if !ok {
			t.Fatalf("%s's log has no %q line", container, what)
		}
		timeline = append(timeline, point{container + ": " + what, at})
		return at
	}
	proxyStarted := must("proxy", proxyLog, "child started", msgIs("child started"))
	proxyReady := must("proxy", proxyLog, "proxy: ready", msgIs("proxy: ready"))
	depReady := must("main", mainLog, "dependency ready (proxy)", func(msg string, f map[string]any) bool {
		return msg == "dependency ready" && f["dependency"] == "proxy"
	})
	mainStarted := must("main", mainLog, "child started", msgIs("child started"))
	mainDone := must("main", mainLog, "main: done", msgIs("main: done"))
	mainExited := must("main", mainLog, "child exited", msgIs("child exited"))
	must("main", mainLog, "koordinator exits 0", exitsWith(0))
	stopCond := must("proxy", proxyLog, "stop condition", msgIs("stop condition"))
	stopping := must("proxy", proxyLog, "stopping the child", msgIs("stopping the child"))
	proxyStopping := must("proxy", proxyLog, "proxy: stopping", msgIs("proxy: stopping"))
	must("proxy", proxyLog, "koordinator exits 0", exitsWith(0))
	timeline = append(timeline, point{"Job Complete (seen)", complete})
	sort.SliceStable(timeline, func(i, j int) bool { return timeline[i].at.Before(timeline[j].at) })
	var b strings.Builder
	for _, p := range timeline {
		fmt.Fprintf(&b, "\n  %7.3fs  %s", p.at.Sub(created).Seconds(), p.what)
	}
	t.Logf("timeline (from the Job's creation):%s", b.String())

	order := func(a, b time.Time, what string) {
		t.Helper()
		if !a.Before(b) {
			t.Errorf("%s (%s vs %s)", what, a.Format(time.StampMicro), b.Format(time.StampMicro))
		}
	}
	order(proxyStarted, proxyReady, "the proxy said ready before it was started")
	order(proxyReady, depReady, "main saw the proxy Ready before the proxy was ready")
	order(depReady, mainStarted, "main's child started before its dependency was ready")
	// "main: done" carries the node's capture time (see captureLag): it may be stamped just
	// after the exit koordinator logged.
	if mainExited.Before(mainDone.Add(-captureLag)) {
		t.Errorf("main's child exit logged %s before main was done", mainDone.Sub(mainExited))
	}
	order(mainExited, stopCond, "the proxy's stop condition held before main exited")
	if gap := stopping.Sub(mainExited); gap < time.Second {
		t.Errorf("the proxy was stopped %s after main exited; want at least stopDelay (1s)", gap)
	}
	// The signal goes out before "stopping the child" is logged: the child may print first.
	order(stopCond, proxyStopping, "the proxy's child said stopping before its stop condition held")
	if gap := proxyStopping.Sub(mainExited); gap < time.Second {
		t.Errorf("the proxy's child heard its stop signal %s after main exited; want at least stopDelay (1s)", gap)
	}
	failed = t.Failed()
}

func exitsWith(code float64) func(string, map[string]any) bool {
	return func(msg string, f map[string]any) bool {
		return msg == "koordinator exits" && f["code"] == code
	}
}
