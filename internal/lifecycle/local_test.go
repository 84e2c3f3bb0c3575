package lifecycle_test

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/koordinator-dev/koordinator/internal/lifecycle"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/test/podstatus"
)

// noAPI fails the test if the loop contacts the API.
func noAPI(t *testing.T) func(*lifecycle.Config) {
	return func(c *lifecycle.Config) {
		c.Connect = func() (cache.ListerWatcher, error) {
			t.Error("the API was contacted although no container is a dependency")
			return nil, os.ErrInvalid
		}
	}
}

// notStartedYet checks, after the loop has had time to act on what it saw, that the child has
// not started.
func (h *harness) notStartedYet(why string) {
	h.t.Helper()
	time.Sleep(300 * time.Millisecond) // several probe intervals; a start would show here
	if h.exists("started") {
		h.t.Fatalf("child started %s; logs:\n%s", why, h.dump())
	}
}

// Local start dependencies are checked from inside the pod; with no container dependency the
// API is never contacted.
func TestLocalStartDepsNeedNoAPI(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close() // nothing listens until the test says so
	file := filepath.Join(t.TempDir(), "ready")
	sp := spec.Spec{Name: "main", ProbeInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second,
		LocalStartDeps: []spec.LocalDep{{Kind: spec.File, Target: file}, {Kind: spec.TCP, Target: addr}}}
	h := start(t, podWith(corev1.RestartPolicyNever, "main"), sp, sidecar, noAPI(t))
	h.waitLog("waiting for start dependencies")
	h.notStartedYet("before its local dependencies were ready")

	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the file ready", func() bool {
		return h.logs.FilterMessage("dependency ready").FilterField(zap.String("dependency", "file "+file)).Len() == 1
	})
	h.notStartedYet("with the port still closed")

	listener, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	defer listener.Close()
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// Local and container start dependencies together: the child waits for both.
func TestLocalAndContainerStartDeps(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ready")
	sp := spec.Spec{Name: "main", StartDeps: []string{"proxy"}, ProbeInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second,
		LocalStartDeps: []spec.LocalDep{{Kind: spec.File, Target: file}}}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, sidecar)
	h.update(set("proxy", podstatus.Running(true)))
	h.waitLog("dependency ready")
	h.notStartedYet("with its file dependency missing")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	h.exitCode()
}

// startTimeout counts the local dependencies too, and names those still pending.
func TestStartTimeoutWithALocalDependency(t *testing.T) {
	file := filepath.Join(t.TempDir(), "never")
	sp := spec.Spec{Name: "main", StartTimeout: 500 * time.Millisecond, ProbeInterval: 20 * time.Millisecond,
		LocalStartDeps: []spec.LocalDep{{Kind: spec.File, Target: file}}}
	h := start(t, podWith(corev1.RestartPolicyNever, "main"), sp, sidecar, noAPI(t))
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	e := h.logs.FilterMessage("startTimeout expired before the start dependencies were Ready").All()
	if len(e) != 1 || len(e[0].ContextMap()["pending"].([]any)) != 1 || e[0].ContextMap()["pending"].([]any)[0] != "file "+file {
		t.Errorf("want the timeout naming the pending file; logs:\n%s", h.dump())
	}
	if h.exists("started") {
		t.Error("child started")
	}
}

// An optional dependency the pod lacks is skipped with one line; the others still count.
func TestOptionalDependencyAbsent(t *testing.T) {
	sp := spec.Spec{Name: "main", StartDeps: []string{"istio-proxy", "proxy"}, StopDeps: []string{"istio-proxy"},
		Optional: []string{"istio-proxy"}, StopTimeout: 5 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, sidecar)
	h.waitLog("optional dependency is not a container of this pod; skipped")
	h.notStartedYet("before proxy was Ready")
	h.update(set("proxy", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	// With its only stop dependency skipped, SIGTERM stops the child at once.
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if h.logs.FilterMessage("holding the stop until the stop dependencies exit").Len() != 0 {
		t.Errorf("held the stop for a skipped dependency; logs:\n%s", h.dump())
	}
}

// An optional dependency the pod has counts like any other.
func TestOptionalDependencyPresent(t *testing.T) {
	sp := spec.Spec{Name: "main", StartDeps: []string{"istio-proxy"}, Optional: []string{"istio-proxy"}, StopTimeout: 5 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyNever, "istio-proxy", "main"), sp, sidecar)
	h.waitLog("pod state")
	h.notStartedYet("before istio-proxy was Ready")
	h.update(set("istio-proxy", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	h.exitCode()
	if h.logs.FilterMessage("optional dependency is not a container of this pod; skipped").Len() != 0 {
		t.Errorf("skipped a dependency the pod has; logs:\n%s", h.dump())
	}
}

// Without the API ("api": false) the stop dependencies' exits come from their state files alone,
// judged by the restart policy the spec states: under OnFailure an exit 1 is retried and does
// not stop the sidecar, an exit 0 does.
func TestStopDepsWithoutTheAPI(t *testing.T) {
	folder := t.TempDir()
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, NoAPI: true, PodRestartPolicy: "OnFailure", StopTimeout: 5 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyOnFailure, "proxy", "main"), sp, sidecar, noAPI(t), podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	exits(t, folder, "main", 1, false)
	h.seesFile("main", 1)
	time.Sleep(200 * time.Millisecond) // the decision follows the file at once; none must come
	if h.logs.FilterMessage("stop condition").Len() > 0 {
		t.Fatalf("stopped for an exit that OnFailure retries; logs:\n%s", h.dump())
	}
	exits(t, folder, "main", 0, false)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0; logs:\n%s", code, h.dump())
	}
	if !h.exists("term") || h.logs.FilterMessage("stop dependencies exited").Len() != 1 {
		t.Errorf("want the stop after main's exit 0; logs:\n%s", h.dump())
	}
}

// Without the API and with the pod-local channel off, nothing could ever stop the child.
func TestStopDepsWithoutTheAPINeedTheChannel(t *testing.T) {
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, NoAPI: true, PodRestartPolicy: "Never"}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, sidecar, noAPI(t))
	if code := h.exitCode(); code != lifecycle.ExitConfig {
		t.Fatalf("exit code %d, want 125", code)
	}
	if h.exists("started") {
		t.Error("child started")
	}
}

// Without the API, a state file that cannot be written is a warning: nobody else learns of
// this container's exit (a binary on a read-only image volume without KOORDINATOR_STATE_DIR).
func TestUnwritableChannelWithoutTheAPIIsAWarning(t *testing.T) {
	folder := filepath.Join(t.TempDir(), "not-a-folder")
	if err := os.WriteFile(folder, nil, 0o644); err != nil { // .state cannot be made under a file
		t.Fatal(err)
	}
	sp := spec.Spec{Name: "main", NoAPI: true, PodRestartPolicy: "Never",
		LocalStartDeps: []spec.LocalDep{{Kind: spec.File, Target: folder}}, ProbeInterval: 20 * time.Millisecond}
	h := start(t, podWith(corev1.RestartPolicyNever, "main"), sp, `exit 0`, noAPI(t), podLocal(folder))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if h.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("set KOORDINATOR_STATE_DIR").Len() != 1 {
		t.Errorf("want one warning naming KOORDINATOR_STATE_DIR; logs:\n%s", h.dump())
	}
}
