package lifecycle_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/podlocal"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/test/podstatus"
)

// crashesFirst counts its runs in $DIR/runs, exits 1 on its first run, and is a sidecar after.
const crashesFirst = `n=$(cat "$DIR/runs" 2>/dev/null || echo 0); echo $((n+1)) > "$DIR/runs"; [ "$n" -eq 0 ] && exit 1; ` + sidecar

func (h *harness) runs() int {
	b, _ := os.ReadFile(filepath.Join(h.dir, "runs"))
	n := 0
	for _, c := range strings.TrimSpace(string(b)) {
		n = n*10 + int(c-'0')
	}
	return n
}

// restartChild OnFailure: a sidecar that crashes is started again inside its container, the
// crash is published as a restart (which stops nobody), and the stop later works as usual.
func TestRestartChildAfterACrash(t *testing.T) {
	folder := t.TempDir()
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, RestartChild: "OnFailure", StopTimeout: 5 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, crashesFirst, podLocal(folder))
	h.waitLog("child exited; restarting it")
	h.waitFor("the child started again", func() bool { return h.exists("started") && h.runs() == 2 })
	h.waitFor("the restart published", func() bool {
		b, err := os.ReadFile(filepath.Join(podlocal.Dir(folder), "proxy"))
		if err != nil {
			return false
		}
		s, err := podlocal.Parse("proxy", b)
		return err == nil && !s.Exited && !s.Restarting && s.Restarts == 1
	})
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0; logs:\n%s", code, h.dump())
	}
	if !h.exists("term") || h.logs.FilterMessage("child started").Len() != 2 {
		t.Errorf("want two starts and the stop signal; logs:\n%s", h.dump())
	}
}

// Under OnFailure an exit 0 is not restarted: koordinator ends with it as usual.
func TestRestartChildNotAfterSuccess(t *testing.T) {
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, RestartChild: "OnFailure"}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, `exit 0`)
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if h.logs.FilterMessage("child exited; restarting it").Len() != 0 {
		t.Errorf("restarted after a success; logs:\n%s", h.dump())
	}
}

// The stop condition holding while a crashed child waits for its back-off ends koordinator:
// the child is not started again, and the exit is the stop dependencies' one.
func TestRestartChildStopDuringTheBackoff(t *testing.T) {
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, RestartChild: "Always", TerminatedByStopDepExitCode: 7}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, `echo x >> "$DIR/runs-log"; exit 3`)
	// The first restart is at once, the second after 1 s: wait for the second wait to begin.
	h.waitFor("two restarts", func() bool { return h.logs.FilterMessage("child exited; restarting it").Len() == 2 })
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 7 {
		t.Fatalf("exit code %d, want terminatedByStopDepExitCode 7; logs:\n%s", code, h.dump())
	}
	// (A loaded machine may let the 1 s back-off end, and a third child start, before the loop
	// sees main's exit; what must never happen is a start after the stop condition.)
	stopped := false
	for _, e := range h.logs.All() {
		stopped = stopped || e.Message == "stop condition"
		if stopped && e.Message == "child started" {
			t.Fatalf("a child started after the stop condition; logs:\n%s", h.dump())
		}
	}
	if !stopped {
		t.Errorf("no stop condition; logs:\n%s", h.dump())
	}
}

// A termination signal is never answered with a restart.
func TestRestartChildNotAfterTermination(t *testing.T) {
	sp := spec.Spec{Name: "proxy", StopDeps: []string{}, RestartChild: "Always", StopTimeout: 5 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, sidecar)
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.signals <- syscall.SIGTERM
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want the child's 0; logs:\n%s", code, h.dump())
	}
	if h.logs.FilterMessage("child exited; restarting it").Len() != 0 {
		t.Errorf("restarted after SIGTERM; logs:\n%s", h.dump())
	}
}

// A stop dependency whose wrapper restarts its child publishes "restarting": that exit is no
// container exit, and its dependents keep running.
func TestARestartingDependencyDoesNotStop(t *testing.T) {
	folder := t.TempDir()
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"),
		spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 10 * time.Second}, sidecar, podLocal(folder))
	h.waitFor("child started", func() bool { return h.exists("started") })
	p, err := podlocal.NewPublisher(folder, "main")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Started(4321, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := p.Restarting(1, time.Now()); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the restarting file seen", func() bool {
		return h.logs.FilterMessage("state file").FilterField(zap.String("state", "restarting")).Len() > 0
	})
	h.notStopped("main's child is being restarted inside its container")
	exits(t, folder, "main", 0, false)
	h.stoppedByFiles(0, "main")
}
