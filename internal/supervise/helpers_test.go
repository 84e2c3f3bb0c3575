package supervise

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/test/proctest"
)

// Every wait in these tests is on a condition, bounded by a deadline generous enough for a
// loaded 2-core machine running -race; none of them asserts how long anything took.
const deadline = 60 * time.Second

// helperEnv switches the test binary into a helper process (see TestMain).
const helperEnv = "KOORDINATOR_SUPERVISE_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "pid1":
		os.Exit(pid1Helper())
	case "leavegroup":
		os.Exit(leaveGroupHelper())
	case "foreground":
		os.Exit(foregroundHelper())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
	// Start reads os.Stdin to decide whether the child's group becomes the terminal's
	// foreground job. Pin it, so the tests do not depend on how `go test` was run; the tests
	// about stdin replace it themselves.
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Stdin = devnull
	os.Exit(m.Run())
}

// newSupervisor returns a Supervisor that is closed when the test ends. Supervisor tests never
// run in parallel: there is one waiter per process.
func newSupervisor(t testing.TB) *Supervisor {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func start(t testing.TB, s *Supervisor, argv ...string) *Child {
	t.Helper()
	c, err := s.Start(argv)
	if err != nil {
		t.Fatalf("Start(%q): %v", argv, err)
	}
	// Whatever the test does, leave nothing behind for the next one.
	t.Cleanup(func() {
		select {
		case <-c.Done():
		default:
			c.Stop(syscall.SIGKILL, 0)
		}
		c.Drain(time.Second)
	})
	return c
}

func waitDone(t testing.TB, c *Child) Exit {
	t.Helper()
	select {
	case <-c.Done():
		return c.Exit()
	case <-time.After(deadline):
		t.Fatalf("child %d has not exited after %v", c.Pid(), deadline)
		return Exit{}
	}
}

// run starts argv, waits for it to exit, drains its group and returns its Exit.
func run(t testing.TB, s *Supervisor, argv ...string) Exit {
	t.Helper()
	c := start(t, s, argv...)
	e := waitDone(t, c)
	c.Drain(2 * time.Second)
	return e
}

// eventually polls cond until it holds, failing the test after the deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFileContains waits until the file at path contains want.
func waitFileContains(t testing.TB, path, want string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s to contain %q", path, want), func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(want))
	})
}

// waitExec waits until pid runs the program named comm (it has passed its execve).
func waitExec(t testing.TB, pid int, comm string) {
	t.Helper()
	eventually(t, fmt.Sprintf("pid %d to exec %s", pid, comm), func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return strings.TrimSpace(string(b)) == comm
	})
}

// zombiesOf lists the zombies whose parent is ppid.
func zombiesOf(ppid int) []proctest.Stat {
	var zs []proctest.Stat
	for _, p := range proctest.All() {
		if p.PPid == ppid && p.State == 'Z' {
			zs = append(zs, p)
		}
	}
	return zs
}

func readPid(t testing.TB, path string) int {
	t.Helper()
	waitFileContains(t, path, "\n")
	b, _ := os.ReadFile(path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pid
}

// replaceStdio swaps one of os.Stdin/os.Stdout for f until the test ends.
func replaceStdio(t testing.TB, which **os.File, f *os.File) {
	old := *which
	*which = f
	t.Cleanup(func() { *which = old })
}

func tempFile(t testing.TB, name string) string {
	return filepath.Join(t.TempDir(), name)
}
