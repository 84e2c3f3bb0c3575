package lifecycle_test

// These tests drive the real decision loop through the real informer code (fed by client-go's
// fake clientset) with real child processes and signals delivered on the loop's signal channel.
// They wait on conditions (log lines, marker files) with generous deadlines; nothing depends on
// how fast the machine is.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/koordinator-dev/koordinator/internal/lifecycle"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/watch/watchtest"
	"github.com/koordinator-dev/koordinator/test/podstatus"
)

const (
	namespace = "default"
	podName   = "job-1"
	deadline  = 30 * time.Second
)

type harness struct {
	t       *testing.T
	client  *fake.Clientset
	pod     *corev1.Pod
	rv      int
	signals chan os.Signal
	logs    *observer.ObservedLogs
	dir     string
	result  chan int
}

// start runs lifecycle.Run for the sidecar-like child `script` (run by sh, $DIR is a temp dir)
// in a pod built from pod, with the given spec. opts adjust the Config (the pod-local channel
// is off unless one sets PodLocalDir).
func start(t *testing.T, pod *corev1.Pod, sp spec.Spec, script string, opts ...func(*lifecycle.Config)) *harness {
	t.Helper()
	h := &harness{t: t, pod: pod.DeepCopy(), signals: make(chan os.Signal, 4), dir: t.TempDir(), result: make(chan int, 1)}
	h.pod.ResourceVersion = "1"
	h.rv = 1
	h.client = fake.NewClientset(h.pod.DeepCopy())
	lw := watchtest.Pods(h.client, namespace)
	core, logs := observer.New(zapcore.DebugLevel)
	h.logs = logs
	if sp.StopSignal == 0 {
		sp.StopSignal = syscall.SIGTERM
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := lifecycle.Config{
		Spec:      sp,
		Command:   []string{"sh", "-c", script},
		SelfArgv:  []string{"/koordinator/koordinator", "sh", "-c", script},
		Namespace: namespace,
		PodName:   podName,
		Connect:   func() (cache.ListerWatcher, error) { return lw, nil },
		Signals:   h.signals,
		Log:       zap.New(core),
		Started:   time.Now(),
		MountInfo: filepath.Join(h.dir, "no-mountinfo"), // the host's own mounts must not name us
	}
	for _, o := range opts {
		o(&cfg)
	}
	t.Setenv("DIR", h.dir)
	go func() { h.result <- lifecycle.Run(ctx, cfg) }()
	t.Cleanup(func() {
		select {
		case <-h.result:
		case <-time.After(deadline):
			t.Errorf("lifecycle.Run did not return; logs:\n%s", h.dump())
		}
	})
	return h
}

// update changes the pod's status through the API and waits until the loop has seen it.
func (h *harness) update(change func(p *corev1.Pod)) {
	h.t.Helper()
	change(h.pod)
	h.rv++
	h.pod.ResourceVersion = strconv.Itoa(h.rv)
	if _, err := h.client.CoreV1().Pods(namespace).UpdateStatus(context.Background(), h.pod.DeepCopy(), metav1.UpdateOptions{}); err != nil {
		h.t.Fatalf("updating pod status: %v", err)
	}
	rv := h.pod.ResourceVersion
	h.waitFor("pod state "+rv, func() bool {
		return h.logs.FilterMessage("pod state").FilterField(zap.String("resourceVersion", rv)).Len() > 0
	})
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			h.t.Fatalf("timed out waiting for %s; logs:\n%s", what, h.dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitLog(msg string) {
	h.t.Helper()
	h.waitFor("log "+msg, func() bool { return h.logs.FilterMessage(msg).Len() > 0 })
}

func (h *harness) exitCode() int {
	h.t.Helper()
	select {
	case code := <-h.result:
		h.result <- code // for Cleanup
		return code
	case <-time.After(deadline):
		h.t.Fatalf("no exit; logs:\n%s", h.dump())
		return -1
	}
}

func (h *harness) exists(name string) bool {
	_, err := os.Stat(filepath.Join(h.dir, name))
	return err == nil
}

func (h *harness) dump() string {
	var b strings.Builder
	for _, e := range h.logs.All() {
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// A child that records it started, and records (and obeys) SIGTERM. The trap comes first, so a
// SIGTERM sent once "started" exists is always caught.
const sidecar = `trap 'echo term > "$DIR/term"; exit 0' TERM; echo started > "$DIR/started"; while :; do sleep 1 & wait $!; done`

// --- pod builders -------------------------------------------------------------------------

func podWith(policy corev1.RestartPolicy, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: namespace},
		Spec:       corev1.PodSpec{RestartPolicy: policy},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
		})
	}
	return p
}

func withSidecarInit(p *corev1.Pod, name string) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Image: "busybox", RestartPolicy: &always})
	p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{
		Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}},
	})
	return p
}

// set changes the named container's status in the pod.
func set(name string, change podstatus.Change) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		if !podstatus.Set(&p.Status, name, change) {
			panic("no status for " + name)
		}
	}
}

// --- tests --------------------------------------------------------------------------------

func TestStartsOnlyWhenEveryStartDepIsReady(t *testing.T) {
	pod := withSidecarInit(podWith(corev1.RestartPolicyNever, "proxy", "main"), "mesh")
	h := start(t, pod, spec.Spec{Name: "main", StartDeps: []string{"proxy", "mesh"}, StopTimeout: 5 * time.Second}, sidecar)

	h.update(set("proxy", podstatus.Running(true)))
	h.update(set("mesh", podstatus.Running(false))) // a native sidecar that is started but not Ready
	if h.exists("started") {
		t.Fatal("child started before every start dependency was Ready")
	}
	h.update(set("mesh", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.waitLog("child started")
	if n := h.logs.FilterMessage("dependency ready").Len(); n != 2 {
		t.Errorf("want 2 'dependency ready' lines, got %d", n)
	}

	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Errorf("exit code %d, want 0 (the child's own code after SIGTERM)", code)
	}
	if !h.exists("term") {
		t.Error("child did not receive SIGTERM")
	}
}

func TestStartTimeout(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "main", StartDeps: []string{"proxy"}, StartTimeout: 300 * time.Millisecond}, sidecar)
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	if h.exists("started") {
		t.Error("child started despite the start timeout")
	}
	h.waitLog("startTimeout expired before the start dependencies were Ready")
}

func TestStartDepExitedForGood(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "main", StartDeps: []string{"proxy"}}, sidecar)
	h.update(set("proxy", podstatus.Terminated(1)))
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	if h.exists("started") {
		t.Error("child started although its start dependency can never be Ready")
	}
}

func TestUnknownDependency(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "main", StartDeps: []string{"proxi"}}, sidecar)
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, `"proxi"`) || !strings.Contains(errs[0].Message, "proxy") {
		t.Errorf("want one error naming the bad dependency and the real containers, got:\n%s", h.dump())
	}
}

// A stop dependency on a native sidecar could never hold (the kubelet stops native sidecars
// after the regular containers): a configuration error once the pod is seen.
func TestStopDepOnANativeSidecar(t *testing.T) {
	h := start(t, withSidecarInit(podWith(corev1.RestartPolicyNever, "main"), "mesh"),
		spec.Spec{Name: "main", StopDeps: []string{"mesh"}}, sidecar)
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, `stop dependency "mesh" is a native sidecar`) || !strings.Contains(errs[0].Message, "remove it from stopDeps") {
		t.Errorf("want one error saying why and what to write instead, got:\n%s", h.dump())
	}
	if h.exists("started") {
		t.Error("child started")
	}
}

// A termination signal that came in before the child started means it never starts, with or
// without dependencies.
func TestTerminationQueuedBeforeTheStart(t *testing.T) {
	for _, sp := range []spec.Spec{{}, {Name: "main", StartDeps: []string{"proxy"}}} {
		t.Run(fmt.Sprintf("startDeps %v", sp.StartDeps), func(t *testing.T) {
			pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
			podstatus.Set(&pod.Status, "proxy", podstatus.Running(true))
			h := start(t, pod, sp, sidecar, func(c *lifecycle.Config) {
				queued := make(chan os.Signal, 1)
				queued <- syscall.SIGINT
				c.Signals = queued
			})
			if code := h.exitCode(); code != 130 {
				t.Fatalf("exit code %d, want 130", code)
			}
			if h.exists("started") || h.logs.FilterMessage("child started").Len() > 0 {
				t.Errorf("child started after SIGINT; logs:\n%s", h.dump())
			}
		})
	}
}

func TestStopsAfterAllStopDepsExitedPlusDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main", "report")
	h := start(t, pod, spec.Spec{Name: "proxy", StopDeps: []string{"main", "report"}, StopDelay: delay,
		StopTimeout: 10 * time.Second, TerminatedByStopDepExitCode: 7, KilledByStopDepExitCode: 137}, sidecar)
	h.waitFor("child started", func() bool { return h.exists("started") })

	h.update(set("main", podstatus.Terminated(0)))
	if h.logs.FilterMessage("stop condition").Len() > 0 {
		t.Fatal("stopped after one of two stop dependencies exited")
	}
	h.update(set("report", podstatus.Terminated(3)))
	if code := h.exitCode(); code != 7 {
		t.Fatalf("exit code %d, want terminatedByStopDepExitCode 7", code)
	}
	if !h.exists("term") {
		t.Error("child did not get its stop signal")
	}
	cond := h.logs.FilterMessage("stop condition").All()
	sent := h.logs.FilterMessage("stopping the child").All()
	if len(cond) != 1 || len(sent) != 1 {
		t.Fatalf("want one stop condition and one stop, logs:\n%s", h.dump())
	}
	if gap := sent[0].Time.Sub(cond[0].Time); gap < delay {
		t.Errorf("stop signal %v after the stop condition, want at least stopDelay %v", gap, delay)
	}
}

func TestKilledAfterStopTimeout(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 200 * time.Millisecond, KilledByStopDepExitCode: 137},
		`trap '' TERM; echo started > "$DIR/started"; while :; do sleep 1; done`)
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 137 {
		t.Fatalf("exit code %d, want killedByStopDepExitCode 137", code)
	}
}

func TestRetriedMainDoesNotStopSidecar(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyOnFailure, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar)
	h.waitFor("child started", func() bool { return h.exists("started") })

	h.update(set("main", podstatus.Terminated(1))) // OnFailure: the kubelet will run it again
	h.update(set("main", func(s *corev1.ContainerStatus) {
		s.LastTerminationState = s.State
		s.RestartCount = 1
		s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}))
	h.update(set("main", func(s *corev1.ContainerStatus) { podstatus.Running(true)(s) }))
	if h.logs.FilterMessage("stop condition").Len() > 0 || h.exists("term") {
		t.Fatalf("sidecar stopped although main will be retried; logs:\n%s", h.dump())
	}
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !h.exists("term") {
		t.Error("child did not get its stop signal after main succeeded")
	}
}

func TestTerminationHeldUntilStopDepsExit(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second, TerminatedByStopDepExitCode: 0}, sidecar)
	h.waitFor("child started", func() bool { return h.exists("started") })

	h.signals <- syscall.SIGTERM
	h.waitLog("holding the stop until the stop dependencies exit")
	if h.exists("term") {
		t.Fatal("child stopped while its stop dependency still runs")
	}
	h.update(func(p *corev1.Pod) {
		now := metav1.Now()
		p.DeletionTimestamp = &now
		set("main", podstatus.Terminated(143))(p)
	})
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !h.exists("term") {
		t.Error("child did not get its stop signal")
	}
}

func TestSecondTerminationCutsTheHoldShort(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopDelay: time.Hour, StopTimeout: 10 * time.Second},
		`trap 'echo term > "$DIR/term"; exit 143' TERM; echo started > "$DIR/started"; while :; do sleep 1 & wait $!; done`)
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	h.waitLog("holding the stop until the stop dependencies exit")
	h.signals <- syscall.SIGINT
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want the child's own 143", code)
	}
}

func TestTerminationWhileWaiting(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "main", StartDeps: []string{"proxy"}}, sidecar)
	h.update(set("proxy", podstatus.Running(false)))
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
	if h.exists("started") {
		t.Error("child started after SIGTERM")
	}
}

func TestGracePeriodBoundsTheHold(t *testing.T) {
	grace := int64(2) // the hold ends at grace − reserve = 1 s after SIGTERM
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h := start(t, pod, spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar)
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want the child's own 0", code)
	}
	stop := h.logs.FilterMessage("stop condition").All()
	if len(stop) != 1 || stop[0].ContextMap()["reason"] != "grace period ends" {
		t.Fatalf("want the stop because the grace period ends; logs:\n%s", h.dump())
	}
}

func TestPodNotFound(t *testing.T) {
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), spec.Spec{Name: "main", StartDeps: []string{"proxy"}, StopTimeout: 5 * time.Second}, sidecar,
		func(c *lifecycle.Config) {
			c.PodName = "job-2"
			// The pod lists as nothing: wrong name or namespace.
			lw := watchtest.Pods(fake.NewClientset(), namespace)
			c.Connect = func() (cache.ListerWatcher, error) { return lw, nil }
		})
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	h.waitLog("pod default/job-2 not found: set KOORDINATOR_POD_NAME and KOORDINATOR_POD_NAMESPACE (downward API) to this pod's name and namespace")
	if h.exists("started") {
		t.Error("child started without its pod")
	}
}

// Settled runs once start-up is over: once while the start dependencies are pending after the
// first pod state, and not again when the child starts later.
func TestSettledRunsOnceAfterStartUp(t *testing.T) {
	settled := make(chan time.Time, 4)
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), spec.Spec{Name: "main", StartDeps: []string{"proxy"}, StopTimeout: 5 * time.Second}, sidecar,
		func(c *lifecycle.Config) { c.Settled = func(*corev1.Pod, bool) { settled <- time.Now() } })
	h.waitLog("pod state")
	select {
	case <-settled:
	case <-time.After(deadline):
		t.Fatalf("Settled did not run while the start dependency was pending; logs:\n%s", h.dump())
	}
	h.update(set("proxy", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	h.exitCode()
	select {
	case at := <-settled:
		t.Errorf("Settled ran a second time, at %v", at)
	case <-time.After(2 * time.Second): // longer than settleDelay
	}
}

// With start dependencies only, nothing after the start needs the pod: the watch is closed once
// the child runs, so such a wrapper holds no watch on the API server.
func TestWatchClosedAfterStartWithoutStopDeps(t *testing.T) {
	stopped := make(chan struct{}, 8)
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), spec.Spec{Name: "main", StartDeps: []string{"proxy"}, StopTimeout: 5 * time.Second}, sidecar,
		func(c *lifecycle.Config) {
			inner := c.Connect
			c.Connect = func() (cache.ListerWatcher, error) {
				lw, err := inner()
				return &watchStopSpy{ListerWatcher: lw, stopped: stopped}, err
			}
		})
	h.waitLog("pod state")
	select {
	case <-stopped:
		t.Fatal("the watch was closed while the start dependency was pending")
	default:
	}
	h.update(set("proxy", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	select {
	case <-stopped:
	case <-time.After(deadline):
		t.Fatalf("the watch is still open after the child started; logs:\n%s", h.dump())
	}
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// watchStopSpy reports each Stop of a watch it handed out.
type watchStopSpy struct {
	cache.ListerWatcher
	stopped chan struct{}
}

func (s *watchStopSpy) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return cache.ToListerWatcherWithContext(s.ListerWatcher).ListWithContext(ctx, o)
}

func (s *watchStopSpy) WatchWithContext(ctx context.Context, o metav1.ListOptions) (kwatch.Interface, error) {
	w, err := cache.ToListerWatcherWithContext(s.ListerWatcher).WatchWithContext(ctx, o)
	if err != nil {
		return nil, err
	}
	return &stopReporting{Interface: w, stopped: s.stopped}, nil
}

func (s *watchStopSpy) IsWatchListSemanticsUnSupported() bool { return true } // like the fake it wraps

type stopReporting struct {
	kwatch.Interface
	stopped chan struct{}
}

func (r *stopReporting) Stop() {
	r.Interface.Stop()
	select {
	case r.stopped <- struct{}{}:
	default:
	}
}

// deleteAt marks the pod as being deleted with the given grace period, ending at deadline, as
// the API server does (deletionTimestamp is when the grace period runs out). It does not wait
// for the loop to see it: a closed watch never does. (A finalizer keeps the fake clientset from
// removing the pod at once.)
func (h *harness) deleteAt(grace int64, deadline time.Time) string {
	h.t.Helper()
	h.pod.Finalizers = []string{"test.koordinator.dev/keep"}
	h.pod.DeletionGracePeriodSeconds = &grace
	h.pod.DeletionTimestamp = &metav1.Time{Time: deadline}
	h.rv++
	h.pod.ResourceVersion = strconv.Itoa(h.rv)
	if _, err := h.client.CoreV1().Pods(namespace).Update(context.Background(), h.pod.DeepCopy(), metav1.UpdateOptions{}); err != nil {
		h.t.Fatalf("marking the pod deleted: %v", err)
	}
	return h.pod.ResourceVersion
}

// stoppedBy waits for the child to be stopped by the hold's end (the grace period) and exit.
func (h *harness) stoppedBy(reason string) {
	h.t.Helper()
	if code := h.exitCode(); code != 0 {
		h.t.Fatalf("exit code %d, want the child's own 0; logs:\n%s", code, h.dump())
	}
	stop := h.logs.FilterMessage("stop condition").All()
	if len(stop) != 1 || stop[0].ContextMap()["reason"] != reason || !h.exists("term") {
		h.t.Fatalf("want the child stopped because %q; logs:\n%s", reason, h.dump())
	}
}

// A preStop hook takes its time out of the deletion's grace period, so SIGTERM comes late: the
// hold ends by the deletion's deadline, not by SIGTERM + grace period. (Here SIGTERM comes with
// 5 s of a 10-minute grace period left; the test's deadline is 30 s.)
func TestDeletionDeadlineBoundsTheHold(t *testing.T) {
	grace := int64(600)
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h := start(t, pod, spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar)
	h.update(set("main", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	rv := h.deleteAt(grace, time.Now().Add(5*time.Second))
	h.waitFor("the deletion seen", func() bool {
		return h.logs.FilterMessage("pod state").FilterField(zap.String("resourceVersion", rv)).Len() > 0
	})
	h.signals <- syscall.SIGTERM
	h.stoppedBy("grace period ends")
}

// A wrapper without stop dependencies has closed its watch; with a stopDelay it lists its pod
// once after SIGTERM to learn the deletion's deadline, and never waits past it.
func TestStopDelayEndsByTheDeletionDeadline(t *testing.T) {
	grace := int64(600)
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.TerminationGracePeriodSeconds = &grace
	h := start(t, pod, spec.Spec{Name: "main", StartDeps: []string{"proxy"}, StopDelay: 10 * time.Minute, StopTimeout: 10 * time.Second}, sidecar)
	h.update(set("proxy", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.deleteAt(grace, time.Now().Add(5*time.Second))
	h.signals <- syscall.SIGTERM
	h.stoppedBy("termination signal")
	if h.logs.FilterMessage("stop deadline").FilterField(zap.Bool("deletion", true)).Len() != 1 {
		t.Errorf("the deletion was not learnt from a list; logs:\n%s", h.dump())
	}
}

// A container killed by a failed liveness probe gets the probe's own grace period when it sets
// one: the hold ends by it, not by the pod's.
func TestProbeGracePeriodBoundsTheHold(t *testing.T) {
	podGrace, probeGrace := int64(600), int64(4)
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.TerminationGracePeriodSeconds = &podGrace
	pod.Spec.Containers[0].LivenessProbe = &corev1.Probe{TerminationGracePeriodSeconds: &probeGrace}
	h := start(t, pod, spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar)
	h.update(set("main", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	h.stoppedBy("grace period ends")
}
