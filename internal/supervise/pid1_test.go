package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/test/proctest"
)

// pid1SkipCode is the helper's exit code for "this environment cannot host the test".
const pid1SkipCode = 3

// TestPID1InNewPIDNamespace runs this test binary as PID 1 of a new PID namespace (as
// koordinator runs in a container), where pid1Helper supervises a shell that leaves orphans and
// a leftover behind and exits 7.
func TestPID1InNewPIDNamespace(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=pid1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
	if os.Geteuid() != 0 {
		// Without root, a user namespace may still allow it.
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No Supervisor is open here, so exec.Cmd may wait for its own child.
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC):
		t.Skipf("cannot create a PID namespace here (needs root, or unprivileged user namespaces): %v", err)
	case errors.As(err, &ee) && ee.ExitCode() == pid1SkipCode:
		t.Skipf("the PID 1 helper cannot run here: %s", stderr.String())
	case err != nil:
		t.Fatalf("PID 1 helper: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "ok:") {
		t.Errorf("PID 1 helper said:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	t.Log(strings.TrimSpace(stdout.String()))
}

// pid1Helper runs as PID 1 of a fresh PID and mount namespace.
func pid1Helper() int {
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "pid1 helper: "+format+"\n", args...)
		return code
	}
	if os.Getpid() != 1 {
		return fail(1, "running as pid %d, want 1", os.Getpid())
	}
	// A /proc that shows this PID namespace. Mount propagation is made private first, so the
	// mount cannot leak into the host's namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fail(pid1SkipCode, "make / private: %v", err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fail(pid1SkipCode, "mount /proc: %v", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(1, "%v", err)
	}
	os.Stdin = devnull

	s, err := New()
	if err != nil {
		return fail(1, "New: %v", err)
	}
	defer s.Close()
	if s.subreaper {
		return fail(1, "PID 1 made itself a subreaper; it is the namespace's reaper already")
	}
	c, err := s.Start([]string{"/bin/sh", "-c", `for i in $(seq 50); do (sleep 0.1 &); done; sleep 1000 & exit 7`})
	if err != nil {
		return fail(1, "Start: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(deadline):
		return fail(1, "the child did not exit within %v", deadline)
	}
	e := c.Exit()
	if e.ExitCode() != 7 || e.Signal != 0 {
		return fail(1, "child exit %+v, want code 7", e)
	}
	leftovers := 0
	for _, p := range proctest.All() {
		if p.Pid != 1 && p.Comm == "sleep" && p.PPid == 1 && p.State != 'Z' {
			leftovers++
		}
	}
	if leftovers == 0 {
		return fail(1, "the leftover `sleep 1000` was not reparented to PID 1")
	}
	c.Drain(2 * time.Second)
	for _, p := range proctest.All() {
		if p.Pid != 1 {
			return fail(1, "process left after Drain: %+v", p)
		}
	}
	if zs := zombiesOf(1); len(zs) != 0 {
		return fail(1, "zombies left: %+v", zs)
	}
	fmt.Printf("ok: child exit %d, %d leftover(s) drained, no zombies, nothing but PID 1 left\n", e.ExitCode(), leftovers)
	return 0
}
