package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/koordinator-dev/koordinator/test/proctest"
	"github.com/koordinator-dev/koordinator/test/ptytest"
)

func TestExitCodePassthrough(t *testing.T) {
	s := newSupervisor(t)
	// The whole range, as tini's suite does: 126 and 127 included, which must come back as
	// the child's own codes and not be mistaken for start failures.
	for code := 0; code <= 255; code++ {
		e := run(t, s, "/bin/sh", "-c", `exit "$1"`, "sh", fmt.Sprint(code))
		if e.Code != code || e.Signal != 0 || e.KilledByStop || e.ExitCode() != code {
			t.Errorf("exit %d: got %+v, ExitCode %d", code, e, e.ExitCode())
		}
	}
	// Programs run directly, not through a shell.
	if e := run(t, s, "true"); e.ExitCode() != 0 {
		t.Errorf("true: got %+v", e)
	}
	if e := run(t, s, "false"); e.ExitCode() != 1 {
		t.Errorf("false: got %+v", e)
	}
}

func TestSignalDeath(t *testing.T) {
	t.Chdir(t.TempDir()) // core_pattern may be a plain file name
	registerLikeTheCaller(t)
	s := newSupervisor(t)
	for _, sig := range []syscall.Signal{
		syscall.SIGHUP, syscall.SIGABRT, syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGSEGV,
		syscall.SIGPIPE, syscall.SIGTERM,
	} {
		name := strings.TrimPrefix(signalName(sig), "SIG")
		e := run(t, s, "/bin/sh", "-c", "ulimit -c 0; kill -"+name+" $$; sleep 1000")
		want := 128 + int(sig)
		if e.Signal != sig || e.ExitCode() != want || e.KilledByStop {
			t.Errorf("kill -%s: got %+v, ExitCode %d, want signal %d, code %d", name, e, e.ExitCode(), sig, want)
		}
	}
}

// registerLikeTheCaller registers ForwardedSignals as the lifecycle does before it starts the
// child. Besides mirroring production, that gives the child default dispositions even where
// this test binary inherited an ignored SIGHUP (nohup), which a shell could not trap.
func registerLikeTheCaller(t *testing.T) {
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, CaughtSignals()...)
	t.Cleanup(func() { signal.Stop(ch) })
}

func signalName(sig syscall.Signal) string {
	return map[syscall.Signal]string{
		syscall.SIGHUP: "SIGHUP", syscall.SIGABRT: "SIGABRT", syscall.SIGKILL: "SIGKILL",
		syscall.SIGUSR1: "SIGUSR1", syscall.SIGSEGV: "SIGSEGV", syscall.SIGPIPE: "SIGPIPE",
		syscall.SIGTERM: "SIGTERM",
	}[sig]
}

func TestExitCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		e    Exit
		want int
	}{
		{Exit{}, 0},
		{Exit{Code: 3}, 3},
		{Exit{Code: 255}, 255},
		{Exit{Signal: syscall.SIGKILL}, 137},
		{Exit{Signal: syscall.SIGKILL, KilledByStop: true}, 137},
		{Exit{Signal: syscall.SIGTERM}, 143},
		{Exit{Signal: syscall.SIGSEGV}, 139},
	} {
		if got := tc.e.ExitCode(); got != tc.want {
			t.Errorf("%+v.ExitCode() = %d, want %d", tc.e, got, tc.want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notExec := write("not-executable", "#!/bin/sh\nexit 0\n", 0o644)
	badInterp := write("bad-interpreter", "#!/nonexistent/interpreter\n", 0o755)
	garbage := write("garbage", "\x00\x01\x02 this is no program\n", 0o755)
	subdir := filepath.Join(dir, "subdir")
	if err := os.Mkdir(subdir, 0o755); err != nil {
		t.Fatal(err)
	}
	pathDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pathDir, "only-readable"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pathDir+":"+os.Getenv("PATH"))

	s := newSupervisor(t)
	for _, tc := range []struct {
		name    string
		argv    []string
		code    int
		is      error
		message string
	}{
		{"not in PATH", []string{"koordinator-no-such-command", "x"}, 127, exec.ErrNotFound,
			`cannot run "koordinator-no-such-command": executable file not found in $PATH`},
		{"missing path", []string{filepath.Join(dir, "missing")}, 127, syscall.ENOENT, "no such file or directory"},
		{"not executable", []string{notExec}, 126, syscall.EACCES, "permission denied"},
		{"directory", []string{subdir}, 126, syscall.EACCES, "permission denied"},
		{"in PATH but not executable", []string{"only-readable"}, 126, syscall.EACCES,
			filepath.Join(pathDir, "only-readable") + ": permission denied"},
		{"bad interpreter", []string{badInterp}, 126, syscall.ENOENT, "interpreter"},
		{"exec format error", []string{garbage}, 126, syscall.ENOEXEC, "exec format error"},
		{"empty argv", nil, 127, nil, "empty command"},
		{"empty name", []string{""}, 127, nil, "empty command"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.Start(tc.argv)
			if err == nil {
				waitDone(t, c)
				t.Fatalf("Start(%q) succeeded, want code %d", tc.argv, tc.code)
			}
			var se *StartError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *StartError", err, err)
			}
			if se.Code != tc.code {
				t.Errorf("code %d, want %d (%v)", se.Code, tc.code, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %q does not contain %q", err.Error(), tc.message)
			}
		})
	}
	// A failed exec leaves nothing behind: ForkExec reaped its own short-lived child.
	if zs := zombiesOf(os.Getpid()); len(zs) != 0 {
		t.Errorf("zombies left: %+v", zs)
	}
}

func TestPathLookup(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	// A non-executable file earlier in PATH does not hide an executable one later on.
	if err := os.WriteFile(filepath.Join(first, "koordinator-test-cmd"), []byte("#!/bin/sh\nexit 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(second, "koordinator-test-cmd"), []byte("#!/bin/sh\nexit 42\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", first+":"+second)
	s := newSupervisor(t)
	if e := run(t, s, "koordinator-test-cmd"); e.ExitCode() != 42 {
		t.Errorf("got %+v, want exit 42 from %s", e, second)
	}
}

func TestPathUnsetUsesDefault(t *testing.T) {
	t.Setenv("PATH", "")
	os.Unsetenv("PATH")
	p, err := lookPath("sh")
	if err != nil || !strings.HasSuffix(p, "/sh") {
		t.Errorf("lookPath(sh) with PATH unset = %q, %v", p, err)
	}
}

func TestEnvAndWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("KOORDINATOR_TEST_VALUE", "from the parent")
	s := newSupervisor(t)
	e := run(t, s, "/bin/sh", "-c", `printf '%s\n%s\n' "$KOORDINATOR_TEST_VALUE" "$(pwd -P)" > out`)
	if e.ExitCode() != 0 {
		t.Fatalf("got %+v", e)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out"))
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if want := "from the parent\n" + real + "\n"; string(b) != want {
		t.Errorf("child saw %q, want %q", b, want)
	}
}

func TestStdioPassthrough(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(t)
	replaceStdio(t, &os.Stdin, inR)
	replaceStdio(t, &os.Stdout, outW)
	c := start(t, s, "cat")
	// The child holds its own copies now; ours must go, or cat never sees EOF and the reader
	// never sees the end of cat's output.
	inR.Close()
	outW.Close()
	go func() {
		_, _ = io.WriteString(inW, "hello through stdin\n")
		inW.Close()
	}()
	got, err := io.ReadAll(outR)
	if err != nil {
		t.Fatal(err)
	}
	if e := waitDone(t, c); e.ExitCode() != 0 {
		t.Errorf("cat: %+v", e)
	}
	if string(got) != "hello through stdin\n" {
		t.Errorf("stdout %q", got)
	}
}

// The child starts with no signal blocked, whatever the mask of the thread that calls Start
// (Go's fork hands the forking thread's mask to the child).
func TestChildStartsWithNothingBlocked(t *testing.T) {
	out := tempFile(t, "status")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	replaceStdio(t, &os.Stdout, f)
	s := newSupervisor(t)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	block := uint64(1)<<(syscall.SIGUSR1-1) | uint64(1)<<(syscall.SIGTERM-1) | uint64(1)<<(40-1)
	var old uint64
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&block)), uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	c := start(t, s, "grep", "^SigBlk", "/proc/self/status")
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 2 /* SIG_SETMASK */, uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0); e != 0 {
		t.Fatal(e)
	}
	if e := waitDone(t, c); e.ExitCode() != 0 {
		t.Fatalf("grep: %+v", e)
	}
	if got, _ := os.ReadFile(out); strings.TrimSpace(string(got)) != "SigBlk:\t0000000000000000" {
		t.Errorf("the child starts with %q, want nothing blocked", got)
	}
}

func TestOwnProcessGroup(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "sleep", "1000")
	pg, err := syscall.Getpgid(c.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if pg != c.Pid() || pg == syscall.Getpgrp() {
		t.Errorf("child pgid %d, want its own pid %d (ours is %d)", pg, c.Pid(), syscall.Getpgrp())
	}
	c.Stop(syscall.SIGTERM, deadline)
	if e := c.Exit(); e.ExitCode() != 143 {
		t.Errorf("got %+v", e)
	}
}

func TestSignalForwarding(t *testing.T) {
	file := tempFile(t, "signals")
	registerLikeTheCaller(t)
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `
		exec 2>/dev/null # no "Hangup" from the shell when its sleep gets the signal too
		trap 'echo got HUP >> "$1"' HUP
		trap 'echo got USR1 >> "$1"' USR1
		trap 'echo got TERM >> "$1"; exit 0' TERM
		echo ready >> "$1"
		while :; do sleep 0.05; done`, "sh", file)
	waitFileContains(t, file, "ready")
	for _, sig := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGHUP, "HUP"}, {syscall.SIGUSR1, "USR1"}, {syscall.SIGTERM, "TERM"}} {
		if err := c.Signal(sig.sig); err != nil {
			t.Fatalf("Signal(%s): %v", sig.name, err)
		}
		waitFileContains(t, file, "got "+sig.name)
	}
	if e := waitDone(t, c); e.ExitCode() != 0 {
		t.Errorf("got %+v, want exit 0 from the TERM trap", e)
	}
	// Signalling a child that has exited is not an error.
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after exit: %v", err)
	}
	c.Drain(2 * time.Second)
	if err := c.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("Signal after drain: %v", err)
	}
}

func TestStopKillsChildIgnoringTERM(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `trap "" TERM; exec sleep 1000`)
	waitExec(t, c.Pid(), "sleep") // past the trap: TERM is ignored now
	c.Stop(syscall.SIGTERM, 100*time.Millisecond)
	select {
	case <-c.Done():
	default:
		t.Fatal("Stop returned before the child exited")
	}
	e := c.Exit()
	if !e.KilledByStop || e.Signal != syscall.SIGKILL || e.ExitCode() != 137 {
		t.Errorf("got %+v, want killed by Stop, 137", e)
	}
}

func TestStopChildExitsOnTERM(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "sleep", "1000")
	c.Stop(syscall.SIGTERM, deadline)
	if e := c.Exit(); e.KilledByStop || e.Signal != syscall.SIGTERM || e.ExitCode() != 143 {
		t.Errorf("got %+v, want SIGTERM, 143, not killed", e)
	}
}

func TestStopChildTrapsTERM(t *testing.T) {
	file := tempFile(t, "ready")
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `exec 2>/dev/null; trap "exit 0" TERM; echo ready > "$1"; while :; do sleep 0.05; done`, "sh", file)
	waitFileContains(t, file, "ready")
	c.Stop(syscall.SIGTERM, deadline)
	if e := c.Exit(); e.KilledByStop || e.ExitCode() != 0 {
		t.Errorf("got %+v, want its own exit 0", e)
	}
}

func TestStopTwiceEscalates(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `trap "" TERM; exec sleep 1000`)
	waitExec(t, c.Pid(), "sleep")
	first := make(chan struct{})
	go func() {
		c.Stop(syscall.SIGTERM, time.Hour)
		close(first)
	}()
	c.Stop(syscall.SIGTERM, 0) // a second SIGTERM to koordinator cuts the wait short
	<-first
	if e := c.Exit(); !e.KilledByStop || e.ExitCode() != 137 {
		t.Errorf("got %+v, want killed by Stop", e)
	}
}

// StopAsync sends the signal before it returns and leaves the SIGKILL to its own goroutine.
func TestStopAsync(t *testing.T) {
	file := tempFile(t, "signals")
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `exec 2>/dev/null; trap 'echo got TERM >> "$1"' TERM; echo ready >> "$1"; while :; do sleep 0.05; done`, "sh", file)
	waitFileContains(t, file, "ready")
	c.StopAsync(syscall.SIGTERM, time.Hour) // returns at once: the trap keeps the child running
	select {
	case <-c.Done():
		t.Fatal("the child exited on a trapped SIGTERM")
	default:
	}
	waitFileContains(t, file, "got TERM")
	c.StopAsync(syscall.SIGTERM, 0) // escalates at once, like Stop
	if e := waitDone(t, c); !e.KilledByStop || e.ExitCode() != 137 {
		t.Errorf("got %+v, want killed by Stop, 137", e)
	}
}

func TestStopAfterExit(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", "exit 5")
	waitDone(t, c)
	c.Stop(syscall.SIGTERM, time.Hour) // must return at once
	if e := c.Exit(); e.ExitCode() != 5 || e.KilledByStop {
		t.Errorf("got %+v", e)
	}
}

// A child that moved itself into another process group still gets its signals, and Stop still
// ends it instead of waiting forever.
func TestStopChildThatLeftItsGroup(t *testing.T) {
	file := tempFile(t, "grandchild")
	t.Setenv(helperEnv, "leavegroup")
	t.Setenv("KOORDINATOR_SUPERVISE_FILE", file)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(t)
	c := start(t, s, self)
	grandchild := readPid(t, file)
	t.Cleanup(func() { _ = syscall.Kill(grandchild, syscall.SIGKILL) })
	if pg, _ := syscall.Getpgid(c.Pid()); pg == c.Pid() {
		t.Fatalf("helper did not leave its group")
	}
	c.Stop(syscall.SIGTERM, 100*time.Millisecond) // the helper ignores SIGTERM
	if e := c.Exit(); !e.KilledByStop || e.ExitCode() != 137 {
		t.Errorf("got %+v, want killed by Stop", e)
	}
	// The grandchild led a group of its own: Drain does not reach it. It is ours to reap,
	// though (it was reparented to us, the subreaper).
	if st, ok := proctest.Read(grandchild); !ok || st.PPid != os.Getpid() {
		t.Errorf("grandchild %d: %+v, want it reparented to us (%d)", grandchild, st, os.Getpid())
	}
	_ = syscall.Kill(grandchild, syscall.SIGKILL)
	eventually(t, "the grandchild to be reaped", func() bool { _, ok := proctest.Read(grandchild); return !ok })
}

// leaveGroupHelper starts `sleep 1000` in a new process group and joins that group, so the
// test's child is no longer in the group it was started in. It ignores SIGTERM.
func leaveGroupHelper() int {
	signal.Ignore(syscall.SIGTERM)
	cmd := exec.Command("sleep", "1000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := syscall.Setpgid(0, cmd.Process.Pid); err != nil {
		fmt.Fprintln(os.Stderr, "setpgid:", err)
		return 2
	}
	if err := os.WriteFile(os.Getenv("KOORDINATOR_SUPERVISE_FILE"), fmt.Appendf(nil, "%d\n", cmd.Process.Pid), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	for {
		time.Sleep(time.Hour)
	}
}

func TestOrphansAreReaped(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `for i in $(seq 200); do (sleep 0.2 &); done; exit 3`)
	e := waitDone(t, c)
	c.Drain(2 * time.Second)
	if e.ExitCode() != 3 {
		t.Errorf("got %+v, want exit 3", e)
	}
	if zs := zombiesOf(os.Getpid()); len(zs) != 0 {
		t.Errorf("%d zombies left, first %+v", len(zs), zs[0])
	}
	for _, p := range proctest.All() {
		if p.Pgrp == c.Pid() {
			t.Errorf("process %+v of the child's group survived Drain", p)
		}
	}
}

func TestDrainKillsLeftovers(t *testing.T) {
	file := tempFile(t, "pid")
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `sleep 1000 & echo $! > "$1"; exit 0`, "sh", file)
	if e := waitDone(t, c); e.ExitCode() != 0 {
		t.Errorf("got %+v", e)
	}
	left := readPid(t, file)
	st, ok := proctest.Read(left)
	if !ok || st.PPid != os.Getpid() || st.Pgrp != c.Pid() {
		t.Fatalf("leftover sleep %d: %+v (found %v), want parent %d (subreaper) and group %d", left, st, ok, os.Getpid(), c.Pid())
	}
	c.Drain(2 * time.Second)
	if _, ok := proctest.Read(left); ok {
		t.Errorf("leftover %d survived Drain", left)
	}
}

func TestDrainEscalatesToSIGKILL(t *testing.T) {
	file := tempFile(t, "pid")
	s := newSupervisor(t)
	// The background sleep inherits the ignored SIGTERM.
	c := start(t, s, "/bin/sh", "-c", `trap "" TERM; sleep 1000 & echo $! > "$1"; exit 0`, "sh", file)
	waitDone(t, c)
	left := readPid(t, file)
	c.Drain(100 * time.Millisecond)
	if _, ok := proctest.Read(left); ok {
		t.Errorf("leftover %d survived Drain", left)
	}
}

func TestDrainWithoutLeftovers(t *testing.T) {
	s := newSupervisor(t)
	c := start(t, s, "true")
	waitDone(t, c)
	c.Drain(time.Hour) // the group is gone: returns at once, or the test times out
}

// A terminal on stdin that is not our controlling terminal (or not with our group in the
// foreground) is no job of ours to hand over: the child leads its own group in the background,
// and Start does not fail on it.
func TestTerminalNotOursStaysInBackground(t *testing.T) {
	master, slave := ptytest.Open(t)
	defer master.Close()
	defer slave.Close()
	replaceStdio(t, &os.Stdin, slave)
	s := newSupervisor(t)
	c := start(t, s, "/bin/sh", "-c", `trap "" TERM; exec sleep 1000`)
	if pg, _ := syscall.Getpgid(c.Pid()); pg != c.Pid() {
		t.Errorf("child pgid %d, want its own pid %d", pg, c.Pid())
	}
	if signal.Ignored(syscall.SIGTTOU) {
		t.Error("SIGTTOU ignored although the child was not made the foreground job")
	}
	waitExec(t, c.Pid(), "sleep")
	c.Stop(syscall.SIGTERM, 100*time.Millisecond)
	if e := c.Exit(); !e.KilledByStop || e.ExitCode() != 137 {
		t.Errorf("got %+v", e)
	}
}

// With stdin our controlling terminal and our group its foreground job, the child's group
// becomes the foreground job, we ignore SIGTTIN and SIGTTOU from then on, and Drain gives the
// terminal back. Run in a helper
// that leads a session of its own with a pseudo-terminal as its controlling terminal; the child
// reads a line from the terminal, which in the background would stop it (SIGTTIN).
func TestTerminalForegroundGoesToChild(t *testing.T) {
	master, slave := ptytest.Open(t)
	defer master.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	report := tempFile(t, "report")
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=foreground", "KOORDINATOR_SUPERVISE_FILE="+report)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	read := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, master); close(read) }() // keeps the terminal's output flowing
	defer func() { master.Close(); <-read }()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The child's line, typed at once; the line discipline keeps it until the child reads.
	if _, err := master.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-done:
	case <-time.After(deadline):
		_ = cmd.Process.Kill()
		<-done
		err = errors.New("timed out (a child in the background is stopped by SIGTTIN when it reads)")
	}
	b, _ := os.ReadFile(report)
	if err != nil {
		t.Errorf("helper: %v: %s", err, b)
	} else {
		t.Log(strings.TrimSpace(string(b)))
	}
}

// foregroundHelper runs as a session leader with the terminal on stdin; see
// TestTerminalForegroundGoesToChild.
func foregroundHelper() int {
	say := func(format string, args ...any) {
		_ = os.WriteFile(os.Getenv("KOORDINATOR_SUPERVISE_FILE"), fmt.Appendf(nil, format+"\n", args...), 0o644)
	}
	fail := func(format string, args ...any) int { say(format, args...); return 1 }
	if !isForeground(os.Stdin.Fd()) {
		return fail("the helper is not the terminal's foreground job")
	}
	s, err := New()
	if err != nil {
		return fail("New: %v", err)
	}
	defer s.Close()
	c, err := s.Start([]string{"/bin/sh", "-c", `read -r line; [ "$line" = go ] && exit 7; exit 1`})
	if err != nil {
		return fail("Start: %v", err)
	}
	var fg int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, os.Stdin.Fd(), syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg))); e != 0 || int(fg) != c.Pid() {
		c.Stop(syscall.SIGKILL, 0)
		return fail("foreground job %d (%v), want the child's group %d", fg, e, c.Pid())
	}
	if !signal.Ignored(syscall.SIGTTIN) || !signal.Ignored(syscall.SIGTTOU) {
		c.Stop(syscall.SIGKILL, 0)
		return fail("SIGTTIN and SIGTTOU are not ignored")
	}
	select {
	case <-c.Done():
	case <-time.After(deadline):
		c.Stop(syscall.SIGKILL, 0)
		return fail("the child never read its line")
	}
	if e := c.Exit(); e.ExitCode() != 7 {
		return fail("child %+v, want exit 7 (it read %q)", e, "go")
	}
	// From the background, with `stty tostop`, our own writes to the terminal still go through:
	// without SIGTTOU ignored they would fail with EIO (or raise SIGTTOU, in a job-control shell).
	var tio syscall.Termios
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, os.Stdout.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
		return fail("TCGETS: %v", e)
	}
	tio.Lflag |= syscall.TOSTOP
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, os.Stdout.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&tio))); e != 0 {
		return fail("TCSETS: %v", e)
	}
	if _, err := fmt.Println("a log line from the background"); err != nil {
		return fail("writing to the terminal from the background: %v", err)
	}
	// The job is over: Drain gives the terminal back.
	c.Drain(time.Second)
	if !isForeground(os.Stdin.Fd()) {
		return fail("Drain did not make our group the foreground job again")
	}
	say("ok: the child read the terminal as its foreground job and exited 7; our writes still went through; the terminal is ours again")
	return 0
}

func TestIsForeground(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isForeground(f.Fd()) {
		t.Error("/dev/null is our foreground terminal?")
	}
	master, slave := ptytest.Open(t)
	defer master.Close()
	defer slave.Close()
	if isForeground(slave.Fd()) {
		t.Error("a terminal opened with O_NOCTTY is our controlling terminal?")
	}
}

// Many children that exit at once: none is lost between fork and registration.
func TestInstantExits(t *testing.T) {
	s := newSupervisor(t)
	cs := make([]*Child, 100)
	for i := range cs {
		cs[i] = start(t, s, "true")
	}
	for _, c := range cs {
		if e := waitDone(t, c); e.ExitCode() != 0 {
			t.Errorf("pid %d: %+v", c.Pid(), e)
		}
	}
}

func TestOneSupervisorAtATime(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if got := subreaper(t); got != 1 {
		t.Errorf("PR_GET_CHILD_SUBREAPER = %d while a Supervisor is open, want 1", got)
	}
	if _, err := New(); err == nil {
		t.Error("a second Supervisor was allowed")
	}
	s.Close()
	s.Close() // idempotent
	if got := subreaper(t); got != 0 {
		t.Errorf("PR_GET_CHILD_SUBREAPER = %d after Close, want 0", got)
	}
	if _, err := s.Start([]string{"true"}); err == nil {
		t.Error("Start after Close succeeded")
	}
	s2, err := New()
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	s2.Close()
}

func subreaper(t *testing.T) int {
	const prGetChildSubreaper = 37
	var v int32
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetChildSubreaper, uintptr(unsafe.Pointer(&v)), 0); e != 0 {
		t.Fatalf("prctl: %v", e)
	}
	return int(v)
}

func TestForwardedSignals(t *testing.T) {
	sigs := ForwardedSignals()
	set := map[os.Signal]bool{}
	for _, s := range sigs {
		if set[s] {
			t.Errorf("%v listed twice", s)
		}
		set[s] = true
	}
	for _, s := range []syscall.Signal{syscall.SIGCHLD, syscall.SIGURG, syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGPROF, syscall.SIGPIPE, 32, 33, 34} {
		if set[s] {
			t.Errorf("%v (%d) must not be forwarded", s, s)
		}
	}
	for _, s := range []syscall.Signal{
		syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1,
		syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, 35, 64,
	} {
		if !set[s] {
			t.Errorf("%v (%d) is not forwarded", s, s)
		}
	}
	// Every catchable signal from 1 to 64 is either forwarded or one of the exceptions.
	for n := 1; n <= 64; n++ {
		s := syscall.Signal(n)
		switch s {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPROF, syscall.SIGPIPE, 32, 33, 34:
			continue
		}
		if !set[s] {
			t.Errorf("signal %d (%v) is missing", n, s)
		}
	}
	// SIGPIPE is caught (koordinator survives its own broken pipes) but never forwarded.
	caught := CaughtSignals()
	if len(caught) != len(sigs)+1 || !slices.Contains(caught, os.Signal(syscall.SIGPIPE)) || Forwarded(syscall.SIGPIPE) {
		t.Errorf("caught %v: want the forwarded signals and SIGPIPE, which is not forwarded", caught)
	}
	if !Forwarded(syscall.SIGUSR1) {
		t.Error("SIGUSR1 is not forwarded")
	}
	// signal.Notify accepts them all, and a forwarded signal arrives.
	ch := make(chan os.Signal, len(sigs))
	signal.Notify(ch, sigs...)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		if got != syscall.SIGUSR2 {
			t.Errorf("got %v", got)
		}
	case <-time.After(deadline):
		t.Fatal("SIGUSR2 not delivered")
	}
}

// BenchmarkStart measures what starting the child adds to koordinator's start-up: Start alone
// (lookup, fork, exec) is timed, waiting for the child's exit is not. The "ForkExec" baseline is
// the bare system call with the same attributes and no Supervisor; the difference is ours.
func BenchmarkStart(b *testing.B) {
	report := func(b *testing.B, total time.Duration) {
		b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e3, "µs-start/op")
	}
	b.Run("ForkExec", func(b *testing.B) {
		path, err := exec.LookPath("true")
		if err != nil {
			b.Fatal(err)
		}
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			pid, err := syscall.ForkExec(path, []string{"true"}, &syscall.ProcAttr{
				Env:   os.Environ(),
				Files: []uintptr{os.Stdin.Fd(), os.Stdout.Fd(), os.Stderr.Fd()},
				Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
			})
			total += time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil) // no Supervisor is open in this sub-benchmark
		}
		report(b, total)
	})
	b.Run("Supervisor.Start", func(b *testing.B) {
		s := newSupervisor(b)
		var total time.Duration
		for b.Loop() {
			t0 := time.Now()
			c, err := s.Start([]string{"true"})
			total += time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			<-c.Done()
		}
		report(b, total)
	})
	b.Run("New+Close", func(b *testing.B) {
		for b.Loop() {
			s, err := New()
			if err != nil {
				b.Fatal(err)
			}
			s.Close()
		}
	})
}
