package testenv

import (
	"os"
	"os/exec"
	"testing"

	"github.com/koordinator-dev/koordinator/test/proctest"
)

// TestOwnerAlive: a run folder's owner is judged in its own PID namespace — the real test node
// starts control planes inside one, whose pids mean nothing outside it.
func TestOwnerAlive(t *testing.T) {
	self := proctest.PIDNamespace(0)
	if self == "" {
		t.Skip("no /proc/self/ns/pid here")
	}
	if !ownerAlive(os.Getpid(), self) || !ownerAlive(os.Getpid(), "") {
		t.Error("this process, in this namespace, is not alive")
	}
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	if ownerAlive(done.Process.Pid, self) {
		t.Errorf("pid %d, reaped, is alive", done.Process.Pid)
	}
	// A namespace no process here is in: gone, seen from the host's namespace; maybe an
	// ancestor's, seen from a nested one.
	if got, want := ownerAlive(os.Getpid(), "pid:[1]"), !inHostPIDNamespace(); got != want {
		t.Errorf("owner in a namespace nobody here is in: alive %v, want %v", got, want)
	}
}
