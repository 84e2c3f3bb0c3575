package lifecycle_test

// The pod-local channel in the decision loop: state files of stop dependencies (written with
// the real podlocal.Publisher into a temporary "binary folder") and the loop's own state file.
// "Does not stop" is asserted after a barrier: the loop has logged the file's state, and then
// seen a later pod update, so the decision on the file has been taken.

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/koordinator-dev/koordinator/internal/lifecycle"
	"github.com/koordinator-dev/koordinator/internal/podlocal"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/test/podstatus"
)

// podLocal turns the channel on with folder as the binary's folder.
func podLocal(folder string) func(*lifecycle.Config) {
	return func(c *lifecycle.Config) { c.PodLocalDir = folder }
}

// exits publishes, as container name's wrapper would, a child that started and exited with code.
func exits(t *testing.T, folder, name string, code int, terminating bool) {
	t.Helper()
	p, err := podlocal.NewPublisher(folder, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Started(4321, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(code, time.Now(), terminating); err != nil {
		t.Fatal(err)
	}
}

// seesFile waits until the loop has taken in dep's state file saying it exited with code.
func (h *harness) seesFile(dep string, code int) {
	h.t.Helper()
	h.waitFor("state file of "+dep, func() bool {
		return h.logs.FilterMessage("state file").FilterField(zap.String("dependency", dep)).
			FilterField(zap.String("state", "exited")).FilterField(zap.Int("code", code)).Len() > 0
	})
}

// barrier returns once the loop has finished whatever it was doing when barrier was called.
func (h *harness) barrier() {
	h.t.Helper()
	h.update(func(*corev1.Pod) {})
}

func (h *harness) notStopped(why string) {
	h.t.Helper()
	h.barrier()
	if h.logs.FilterMessage("stop condition").Len() > 0 || h.exists("term") {
		h.t.Fatalf("sidecar stopped although %s; logs:\n%s", why, h.dump())
	}
}

func (h *harness) stoppedByFiles(want int, deps ...string) {
	h.t.Helper()
	if code := h.exitCode(); code != want {
		h.t.Fatalf("exit code %d, want %d; logs:\n%s", code, want, h.dump())
	}
	if !h.exists("term") {
		h.t.Error("child did not get its stop signal")
	}
	got := h.logs.FilterMessage("stop dependencies exited").All()
	if len(got) != 1 {
		h.t.Fatalf("want one 'stop dependencies exited'; logs:\n%s", h.dump())
	}
	if files, _ := got[0].ContextMap()["fromStateFiles"].([]any); len(files) != len(deps) {
		h.t.Errorf("fromStateFiles = %v, want %v", got[0].ContextMap()["fromStateFiles"], deps)
	}
}

func TestStateFileExitStopsWithoutTheAPI(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second, TerminatedByStopDepExitCode: 7},
		sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	exits(t, folder, "main", 0, false) // the API still shows main waiting to start
	h.stoppedByFiles(7, "main")
}

func TestStateFileOfARetriedExitDoesNotStop(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyOnFailure, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	exits(t, folder, "main", 1, false) // OnFailure: the kubelet runs it again
	h.seesFile("main", 1)
	h.notStopped("main exited 1 under OnFailure")
	exits(t, folder, "main", 0, false) // the retry succeeds
	h.stoppedByFiles(0, "main")
}

// Issue 7's rule scenario: main has restartPolicy Never plus a rule restarting it on exit 42, in
// an OnFailure pod. 42 is retried; 3 is final.
func TestStateFileJudgedByContainerRestartRules(t *testing.T) {
	folder := t.TempDir()
	pod := podWith(corev1.RestartPolicyOnFailure, "proxy", "main")
	never := corev1.ContainerRestartPolicyNever
	pod.Spec.Containers[1].RestartPolicy = &never
	pod.Spec.Containers[1].RestartPolicyRules = []corev1.ContainerRestartRule{{
		Action:    corev1.ContainerRestartRuleActionRestart,
		ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: corev1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}},
	}}
	h := start(t, pod, spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	exits(t, folder, "main", 42, false)
	h.seesFile("main", 42)
	h.notStopped("main exited 42, which its rule restarts")
	exits(t, folder, "main", 3, false)
	h.stoppedByFiles(0, "main")
}

func TestBadStateFilesAreIgnoredWithAWarning(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main", "report"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main", "report"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })

	// Garbage for main; a symlink to a perfectly valid "exited 0" for report.
	if err := os.WriteFile(filepath.Join(podlocal.Dir(folder), "main"), []byte("{garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	exits(t, elsewhere, "report", 0, false)
	if err := os.Symlink(filepath.Join(podlocal.Dir(elsewhere), "report"), filepath.Join(podlocal.Dir(folder), "report")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("two warnings", func() bool { return h.logs.FilterMessage("ignoring a pod-local state file").Len() >= 2 })
	h.notStopped("its dependencies' state files are garbage and a symlink")

	// The API still works.
	h.update(set("main", podstatus.Terminated(0)))
	h.update(set("report", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got := h.logs.FilterMessage("stop dependencies exited").All(); len(got) != 1 || len(got[0].ContextMap()["fromStateFiles"].([]any)) != 0 {
		t.Errorf("want the stop from the API alone; logs:\n%s", h.dump())
	}
}

func TestChannelOffOnlyTheAPIStops(t *testing.T) {
	folder := t.TempDir()
	exits(t, folder, "main", 0, false) // there, but nobody looks
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar,
		func(c *lifecycle.Config) { c.PodLocalDir = "" }) // what KOORDINATOR_LOCAL_STATE=off gives
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.notStopped("the channel is off")
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if _, err := os.Lstat(filepath.Join(podlocal.Dir(folder), "proxy")); err == nil {
		t.Error("published although the channel is off")
	}
}

// Pod deletion: the kubelet sends SIGTERM to every container and writes no container state
// until all have stopped. main's wrapper publishes its exit (after its own SIGTERM, with a code
// OnFailure would retry); the sidecar, SIGTERMed too, stops at once, without any API change.
func TestStateFileAfterSIGTERMStopsAtOnce(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyOnFailure, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })

	// main alone being stopped by the kubelet (say, its liveness probe): the API decides.
	exits(t, folder, "main", 0, true)
	h.seesFile("main", 0)
	h.notStopped("only main was being stopped, and OnFailure may run it again")

	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if !h.exists("term") {
		t.Error("child did not get its stop signal")
	}
	if h.logs.FilterMessage("holding the stop until the stop dependencies exit").Len() > 0 {
		t.Errorf("held the stop although main's state file says it exited; logs:\n%s", h.dump())
	}
}

// A state file from an older instance does not count once the API shows a newer one running.
func TestStaleStateFileIsIgnored(t *testing.T) {
	folder := t.TempDir()
	exits(t, folder, "main", 0, true) // an old instance, killed by the kubelet
	h := start(t, podWith(corev1.RestartPolicyOnFailure, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.seesFile("main", 0)
	h.update(set("main", func(s *corev1.ContainerStatus) {
		podstatus.Running(true)(s)
		s.RestartCount = 1
		s.State.Running.StartedAt = metav1.NewTime(time.Now().Add(2 * time.Second))
	}))
	h.signals <- syscall.SIGTERM // even after SIGTERM: main's current instance still runs
	h.waitLog("holding the stop until the stop dependencies exit")
	h.notStopped("the state file is from main's previous instance")
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

func TestPublishesItsOwnState(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second, TerminatedByStopDepExitCode: 9},
		sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	running := readStateFile(t, folder, "proxy")
	if running.Exited || running.Pid == 0 || running.StartedAt.IsZero() {
		t.Errorf("while the child runs: %+v", running)
	}
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 9 {
		t.Fatalf("exit code %d, want 9", code)
	}
	exited := readStateFile(t, folder, "proxy")
	if !exited.Exited || exited.ExitCode != 9 || exited.Terminating || exited.Pid != running.Pid || exited.Instance != running.Instance {
		t.Errorf("after the exit: %+v (was %+v)", exited, running)
	}
}

// A wrapper that never starts its child still says it exited, and why.
func TestPublishesAnExitWithoutAChild(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "main", StartDeps: []string{"proxy"}}, sidecar, podLocal(folder))
	h.update(set("proxy", podstatus.Running(false)))
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
	if s := readStateFile(t, folder, "main"); !s.Exited || s.ExitCode != 143 || !s.Terminating || s.Pid != 0 {
		t.Errorf("got %+v", s)
	}
}

func TestOwnNameFromThePod(t *testing.T) {
	folder := t.TempDir()
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.Containers[0].Command = []string{"/koordinator/koordinator", "sh", "-c", sidecar} // the harness's argv
	h := start(t, pod, spec.Spec{StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	if s := readStateFile(t, folder, "proxy"); s.Exited || s.Pid == 0 {
		t.Errorf("got %+v", s)
	}
	h.update(set("main", podstatus.Terminated(0)))
	h.exitCode()
}

// Without dependencies nothing contacts the API: the name comes from the termination-log mount.
func TestOwnNameFromMountInfo(t *testing.T) {
	folder := t.TempDir()
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	line := "2762 2750 254:1 /var/lib/kubelet/pods/6a1c/containers/worker/7f3a /dev/termination-log rw - ext4 /dev/vda1 rw\n"
	if err := os.WriteFile(mountinfo, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, podWith(corev1.RestartPolicyNever, "worker"), spec.Spec{}, `exit 5`, podLocal(folder),
		func(c *lifecycle.Config) {
			c.MountInfo = mountinfo
			c.Connect = nil // calling it would panic
		})
	if code := h.exitCode(); code != 5 {
		t.Fatalf("exit code %d, want 5", code)
	}
	if s := readStateFile(t, folder, "worker"); !s.Exited || s.ExitCode != 5 || s.Pid == 0 {
		t.Errorf("got %+v", s)
	}
}

func TestNoNameNoPublishing(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "worker"), spec.Spec{}, `exit 0`, podLocal(folder))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if entries, _ := os.ReadDir(podlocal.Dir(folder)); len(entries) != 0 {
		t.Errorf("published without a name: %v", entries)
	}
	h.waitLog("not publishing on the pod-local channel: this container's name is unknown (set \"name\" in the spec)")
}

func readStateFile(t *testing.T, folder, name string) podlocal.State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(podlocal.Dir(folder), name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := podlocal.Parse(name, b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return s
}

// A spec name that contradicts the pod is a configuration error: the dependencies were checked
// against the wrong name (here a self-dependency would go unseen), and publishing under another
// container's name could stop that container's dependents.
func TestSpecNameContradictingThePod(t *testing.T) {
	folder := t.TempDir()
	pod := podWith(corev1.RestartPolicyNever, "proxy", "main")
	pod.Spec.Containers[0].Command = []string{"/koordinator/koordinator", "sh", "-c", sidecar} // this process runs in proxy
	h := start(t, pod, spec.Spec{Name: "main", StopDeps: []string{"proxy"}}, sidecar, podLocal(folder))
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	errs := h.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 || errs[0].Message != `the spec's name is "main" but this process runs in container "proxy" of pod default/job-1: set "name" to "proxy", or remove it (koordinator finds it from the pod)` {
		t.Errorf("want one error naming both names, got:\n%s", h.dump())
	}
	if h.exists("started") {
		t.Error("child started")
	}
	if entries, _ := os.ReadDir(podlocal.Dir(folder)); len(entries) != 0 {
		t.Errorf("published: %v", entries)
	}
}
