package main

// The PID-1 behaviour suite: what tini's and dumb-init's test suites check, asked of the built
// binary in the three situations it meets in a pod:
//
//   - pipe: stdin is not a terminal and koordinator is not PID 1 (a child subreaper);
//   - terminal: stdin is the container's terminal (`kubectl run -it`, `kubectl attach`), here a
//     pseudo-terminal that is koordinator's controlling terminal in a session of its own;
//   - pid1: koordinator is PID 1 of a new PID namespace, as in a container.
//
// Signals are real: sent with kill(2), or typed on the terminal (^C is the byte 0x03 written to
// the terminal's master side, which the line discipline turns into SIGINT for the foreground
// job). Every wait is on a condition, bounded by a generous deadline.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/koordinator-dev/koordinator/internal/supervise"

	"github.com/koordinator-dev/koordinator/test/proctest"
	"github.com/koordinator-dev/koordinator/test/ptytest"
)

type mode string

const (
	pipeMode     mode = "pipe"
	terminalMode mode = "terminal"
	pid1Mode     mode = "pid1"
)

var modes = []mode{pipeMode, terminalMode, pid1Mode}

// suiteChildEnv switches this test binary into one of the suite's helper programs (see init),
// which koordinator then runs as its child, or which runs koordinator.
const suiteChildEnv = "SUITE_CHILD"

func init() {
	startWithDefaultDispositions()
	switch os.Getenv(suiteChildEnv) {
	case "":
	case "record-signals":
		os.Exit(recordSignals(os.Getenv("SUITE_OUT")))
	case "exec-with-signal-state":
		os.Exit(execWithSignalState(os.Args[1:]))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", suiteChildEnv, os.Getenv(suiteChildEnv))
		os.Exit(2)
	}
}

// startWithDefaultDispositions sets signals 32 and 34 back to their default action in this
// test process when it inherited them ignored: GNU make starts its children with 32 and 33
// ignored (make test runs this binary under make), an ignored signal is inherited through fork
// and exec, and the Go runtime leaves 32 and 34 as it found them — so koordinator would be
// started with 32 ignored, unlike under a container runtime, which starts it with every signal at
// its default. 33 is the Go runtime's own and is left alone.
func startWithDefaultDispositions() {
	// The kernel's struct sigaction: handler (0 is SIG_DFL), flags, restorer, mask.
	var dfl struct{ handler, flags, restorer, mask uint64 }
	for _, sig := range []uintptr{32, 34} {
		_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, sig, uintptr(unsafe.Pointer(&dfl)), 0, 8, 0, 0)
	}
}

// recordSignals appends "ready", then the number of every signal it receives, to the file out;
// it exits 0 on SIGTERM. It catches every signal a Go program can, so none of them stops or
// kills it.
func recordSignals(out string) int {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sigs := make(chan os.Signal, 128)
	signal.Notify(sigs)
	fmt.Fprintln(f, "ready")
	for s := range sigs {
		fmt.Fprintln(f, int(s.(syscall.Signal)))
		if s == syscall.SIGTERM {
			return 0
		}
	}
	return 0
}

// recorder is the environment and command that make koordinator's child (or any process in its
// group) a recordSignals writing to out. Asynchronous preemption is off so that the Go runtime
// sends itself no SIGURG: a recorded SIGURG can only be a forwarded one.
func recorder(t *testing.T, out string) (env []string, argv []string) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return []string{suiteChildEnv + "=record-signals", "SUITE_OUT=" + out, "GODEBUG=asyncpreemptoff=1"}, []string{self}
}

// recorded returns the signal numbers recorded in out so far.
func recorded(out string) []int {
	var sigs []int
	for l := range strings.Lines(readFile(out)) {
		if n, err := strconv.Atoi(strings.TrimSpace(l)); err == nil {
			sigs = append(sigs, n)
		}
	}
	return sigs
}

// Signal state given to koordinator by execWithSignalState: blocked and ignored as a careless
// parent might leave them.
var (
	parentBlocks  = []syscall.Signal{syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, 40}
	parentIgnores = []syscall.Signal{syscall.SIGUSR2, syscall.SIGQUIT, 34}
)

// execWithSignalState blocks parentBlocks, ignores parentIgnores and execs argv.
func execWithSignalState(argv []string) int {
	signal.Ignore(syscall.SIGUSR2, syscall.SIGQUIT)
	// os/signal cannot touch 34 (the Go runtime leaves it alone): set it with rt_sigaction.
	// The kernel's struct sigaction is handler, flags, restorer, mask on amd64 and arm64.
	act := struct{ handler, flags, restorer, mask uint64 }{handler: 1 /* SIG_IGN */}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, 34, uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "rt_sigaction:", e)
		return 2
	}
	// The mask is per thread and execve keeps the calling thread's.
	runtime.LockOSThread()
	var set uint64
	for _, s := range parentBlocks {
		set |= 1 << (s - 1)
	}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 0 /* SIG_BLOCK */, uintptr(unsafe.Pointer(&set)), 0, 8, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "rt_sigprocmask:", e)
		return 2
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	return 2
}

// koord is koordinator running in one of the modes.
type koord struct {
	t    *testing.T
	cmd  *exec.Cmd
	term *os.File // the terminal's master side, in terminal mode
	out  string   // the file that gets stdout and stderr; in terminal mode all the terminal showed
	done chan struct{}
	seen []int // children seen, killed at the end in case they outlived koordinator
}

// output is what koordinator and its children have written so far.
func (k *koord) output() string { return readFile(k.out) }

// startIn starts koordinator with argv (its own flags, then the command) in mode m.
func startIn(t *testing.T, m mode, env []string, argv ...string) *koord {
	t.Helper()
	return startProgram(t, m, env, binary, argv...)
}

// startProgram starts path (koordinator, or a helper that execs it) in mode m.
func startProgram(t *testing.T, m mode, env []string, path string, args ...string) *koord {
	t.Helper()
	k := &koord{t: t, cmd: exec.Command(path, args...), out: filepath.Join(t.TempDir(), "output"), done: make(chan struct{})}
	k.cmd.Env = cleanEnv(env...)
	// A file, not a pipe: exec.Cmd.Wait would also wait for every process holding a pipe open.
	out, err := os.Create(k.out)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var slave *os.File
	switch m {
	case pipeMode:
		k.cmd.Stdout, k.cmd.Stderr = out, out
	case terminalMode:
		k.term, slave = ptytest.Open(t)
		k.cmd.Stdin, k.cmd.Stdout, k.cmd.Stderr = slave, slave, slave
		// A session of its own, the terminal its controlling terminal and its process group the
		// foreground job: a container's first process under `kubectl run -it`.
		k.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	case pid1Mode:
		k.cmd.Stdout, k.cmd.Stderr = out, out
		k.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
		if os.Geteuid() != 0 {
			// Without root, a user namespace may still allow a PID namespace.
			k.cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
			k.cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
			k.cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		}
	}
	err = k.cmd.Start()
	if slave != nil {
		slave.Close() // koordinator has its own copies; the master reads EOF once all are closed
	}
	if err != nil {
		if k.term != nil {
			k.term.Close()
		}
		if m == pid1Mode && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSPC)) {
			t.Skipf("cannot create a PID namespace here (needs root, or unprivileged user namespaces): %v", err)
		}
		t.Fatal(err)
	}
	read := make(chan struct{})
	if k.term != nil {
		copyTo, err := os.OpenFile(k.out, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.Copy(copyTo, k.term); copyTo.Close(); close(read) }()
	} else {
		close(read)
	}
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		// Whatever the test did, leave nothing running: koordinator, every descendant, and in
		// terminal mode its whole session (what outlived koordinator is no descendant any more).
		for _, pid := range append(append(descendants(k.pid()), k.seen...), k.pid()) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if k.term != nil {
			for _, p := range proctest.All() {
				if p.Session == k.pid() {
					_ = syscall.Kill(p.Pid, syscall.SIGKILL)
				}
			}
		}
		<-k.done
		if k.term != nil {
			k.term.Close()
			<-read
		}
		if t.Failed() {
			t.Logf("koordinator (%s mode) output:\n%s", m, k.output())
		}
	})
	if m == pid1Mode {
		// PID 1 of its own namespace: its pids, the host's first, end with 1.
		if f := strings.Fields(statusField(k.pid(), "NSpid")); len(f) != 2 || f[1] != "1" {
			t.Fatalf("koordinator's NSpid is %q, want its host pid and 1", f)
		}
	}
	return k
}

func (k *koord) pid() int { return k.cmd.Process.Pid }

func (k *koord) signal(sig syscall.Signal) {
	k.t.Helper()
	if err := syscall.Kill(k.pid(), sig); err != nil {
		k.t.Fatalf("kill -%d koordinator: %v", sig, err)
	}
}

// wait waits for koordinator to exit and returns its exit code (-1 when a signal killed it).
func (k *koord) wait() int {
	k.t.Helper()
	select {
	case <-k.done:
		return k.cmd.ProcessState.ExitCode()
	case <-time.After(deadline):
		k.t.Fatalf("koordinator did not exit within %v", deadline)
		return -1
	}
}

func (k *koord) exited() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

// typ types s on the terminal.
func (k *koord) typ(s string) {
	k.t.Helper()
	if _, err := k.term.WriteString(s); err != nil {
		k.t.Fatalf("typing %q: %v", s, err)
	}
}

// waitOutput waits until s has appeared n times in the output. koordinator logs the command line
// to the same output, so a marker the child prints must not appear in it literally: the tests
// build theirs with the shell's arithmetic ("ready-$((6*7))" prints "ready-42").
func (k *koord) waitOutput(s string, n int) {
	k.t.Helper()
	eventually(k.t, fmt.Sprintf("%q %d time(s) in the output", s, n), func() bool {
		return strings.Count(k.output(), s) >= n
	})
}

// child waits for koordinator's one child and returns its pid.
func (k *koord) child() int {
	k.t.Helper()
	var pid int
	eventually(k.t, "koordinator's child", func() bool {
		kids := childrenOf(k.pid())
		if len(kids) == 1 {
			pid = kids[0]
		}
		return len(kids) == 1
	})
	k.seen = append(k.seen, pid)
	return pid
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFileContains waits until the file at path contains s.
func waitFileContains(t *testing.T, path, s string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s to contain %q", path, s), func() bool { return strings.Contains(readFile(path), s) })
}

// childrenOf lists the processes whose parent is ppid, zombies included.
func childrenOf(ppid int) []int {
	var kids []int
	for _, p := range proctest.All() {
		if p.PPid == ppid {
			kids = append(kids, p.Pid)
		}
	}
	return kids
}

func descendants(pid int) []int {
	var all []int
	for _, kid := range childrenOf(pid) {
		all = append(all, kid)
		all = append(all, descendants(kid)...)
	}
	return all
}

// statusField returns the value of a field of /proc/<pid>/status.
func statusField(pid int, name string) string {
	for l := range strings.Lines(readFile(fmt.Sprintf("/proc/%d/status", pid))) {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	st, ok := proctest.Read(pid)
	return ok && st.State != 'Z'
}

// Every exit code 0..255 comes back as koordinator's own: 126 and 127 included, which must not be
// mistaken for koordinator's start failures, and 128+N, which must not be taken for signals. The
// other modes change how the child is started and reaped, not how its status is read: they run
// the codes at the edges.
func TestSuiteExitCodes(t *testing.T) {
	edges := []int{0, 1, 2, 125, 126, 127, 128, 129, 130, 137, 143, 254, 255}
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			codes := edges
			if m == pipeMode {
				codes = nil
				for code := 0; code <= 255; code++ {
					codes = append(codes, code)
				}
			}
			for _, code := range codes {
				k := startIn(t, m, nil, "sh", "-c", `exit "$1"`, "sh", strconv.Itoa(code))
				if got := k.wait(); got != code {
					t.Errorf("child exit %d: koordinator exit %d", code, got)
				}
			}
		})
	}
}

// A child killed by signal N makes koordinator exit 128+N: every signal whose default action
// ends a process, real-time ones included.
func TestSuiteSignalDeaths(t *testing.T) {
	var deadly []int
	for n := 1; n <= 64; n++ {
		switch syscall.Signal(n) {
		case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH, // ignored by default
			syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, // stop by default
			32, 33: // the C library's own: the shell cannot send them to itself
			continue
		}
		deadly = append(deadly, n)
	}
	dir := t.TempDir() // cores, should core_pattern be a plain file name
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			for _, n := range deadly {
				k := startIn(t, m, nil, "sh", "-c", `cd "$1"; ulimit -c 0; kill -"$2" $$; exit 99`, "sh", dir, strconv.Itoa(n))
				if got := k.wait(); got != 128+n {
					t.Errorf("child killed by signal %d: koordinator exit %d, want %d", n, got, 128+n)
				}
			}
		})
	}
}

// Every signal of supervise.ForwardedSignals sent to koordinator reaches the child, one by one;
// SIGTERM (and SIGINT) start the stop sequence instead, which sends the child SIGTERM. SIGPIPE,
// SIGURG and SIGCHLD are never passed on, nor, in terminal mode, SIGTTIN and SIGTTOU: there
// koordinator is a background process of the terminal, and the kernel sends it those about its
// own use of the terminal.
func TestSuiteSignalsForwarded(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "signals")
			env, argv := recorder(t, out)
			k := startIn(t, m, env, argv...)
			waitFileContains(t, out, "ready\n")

			notForwarded := []syscall.Signal{syscall.SIGPIPE, syscall.SIGURG, syscall.SIGCHLD}
			if m == terminalMode {
				notForwarded = append(notForwarded, syscall.SIGTTIN, syscall.SIGTTOU)
			}
			// Sent first: had one been forwarded, the child would have recorded it long before
			// the last forwarded signal.
			for _, sig := range notForwarded {
				k.signal(sig)
			}
			for _, s := range supervise.ForwardedSignals() {
				sig := s.(syscall.Signal)
				if sig == syscall.SIGTERM || sig == syscall.SIGINT || slices.Contains(notForwarded, sig) {
					continue
				}
				k.signal(sig)
				eventually(t, fmt.Sprintf("signal %d (%v) to reach the child", sig, sig), func() bool {
					return slices.Contains(recorded(out), int(sig))
				})
			}
			k.signal(syscall.SIGTERM)
			if code := k.wait(); code != 0 {
				t.Errorf("exit %d after SIGTERM, want the child's 0", code)
			}
			got := recorded(out)
			for _, sig := range notForwarded {
				if slices.Contains(got, int(sig)) {
					t.Errorf("signal %d (%v) was forwarded", sig, sig)
				}
			}
			if len(got) == 0 || got[len(got)-1] != int(syscall.SIGTERM) {
				t.Errorf("the child's last signal is not the stop signal SIGTERM: %v", got)
			}
		})
	}
}

// Forwarded signals and the stop go to the child's whole process group: a grandchild gets them.
func TestSuiteGroupGetsSignals(t *testing.T) {
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "signals")
			env, argv := recorder(t, out)
			// The shell ignores what is forwarded, so only the stop ends it.
			k := startIn(t, m, env, "sh", "-c", `trap "" HUP USR1; "$0" & wait`, argv[0])
			waitFileContains(t, out, "ready\n")
			for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1} {
				k.signal(sig)
				eventually(t, fmt.Sprintf("%v to reach the grandchild", sig), func() bool {
					return slices.Contains(recorded(out), int(sig))
				})
			}
			k.signal(syscall.SIGTERM)
			if code := k.wait(); code != 128+int(syscall.SIGTERM) {
				t.Errorf("exit %d, want 143 (the shell killed by the stop signal)", code)
			}
			if got := recorded(out); !slices.Contains(got, int(syscall.SIGTERM)) {
				t.Errorf("the grandchild never got the stop signal: %v", got)
			}
		})
	}
}

// Orphans reparented to koordinator are reaped as they die: no zombie piles up while the child
// runs.
func TestSuiteReapsOrphans(t *testing.T) {
	const orphans = 100
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			ready := filepath.Join(t.TempDir(), "ready")
			k := startIn(t, m, []string{"READY=" + ready}, "sh", "-c",
				`i=0; while [ $i -lt $1 ]; do (sleep 1000 &); i=$((i+1)); done; echo > "$READY"; while :; do sleep 1; done`,
				"sh", strconv.Itoa(orphans))
			waitFileContains(t, ready, "\n")
			var sleeps []int
			eventually(t, fmt.Sprintf("%d orphans reparented to koordinator", orphans), func() bool {
				sleeps = slices.DeleteFunc(childrenOf(k.pid()), func(pid int) bool {
					st, _ := proctest.Read(pid)
					return st.Comm != "sleep" // the child, sh
				})
				return len(sleeps) == orphans
			})
			k.seen = append(k.seen, sleeps...)
			for _, pid := range sleeps {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
			// Only koordinator can reap them: a zombie left would stay its child for good.
			eventually(t, "the orphans to be reaped", func() bool {
				return len(childrenOf(k.pid())) == 1
			})
			k.signal(syscall.SIGTERM)
			if code := k.wait(); code != 143 {
				t.Errorf("exit %d, want 143", code)
			}
		})
	}
}

// Signals 32, 33 and 34 cannot be caught by a Go program (the runtime keeps them for the C
// library and itself), so koordinator cannot forward them. 33 has a handler in the Go runtime that
// drops it. 32 and 34 keep their default action, to end the process: when koordinator is not PID
// 1 they end it, and its child is killed with it rather than left running without its
// supervisor. As PID 1 the kernel drops them (PID 1 gets no signal it has no handler for).
func TestSuiteUncatchableSignals(t *testing.T) {
	for _, m := range modes {
		for _, sig := range []syscall.Signal{32, 33, 34} {
			t.Run(fmt.Sprintf("%s/%d", m, sig), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "signals")
				env, argv := recorder(t, out)
				k := startIn(t, m, env, argv...)
				waitFileContains(t, out, "ready\n")
				child := k.child()
				k.signal(sig)
				// A real-time signal is delivered after every lower one pending, so once the
				// child has it, koordinator has taken sig (or the kernel dropped it).
				_ = syscall.Kill(k.pid(), 40)
				if m != pid1Mode && sig != 33 {
					k.wait()
					if ws := k.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != sig {
						t.Errorf("koordinator ended with %v, want killed by signal %d", k.cmd.ProcessState, sig)
					}
					eventually(t, "the child to be killed with koordinator", func() bool { return !running(child) })
					return
				}
				eventually(t, "the child to get signal 40", func() bool {
					return slices.Contains(recorded(out), 40) || k.exited()
				})
				if k.exited() {
					t.Fatalf("signal %d ended koordinator: %v", sig, k.cmd.ProcessState)
				}
				if slices.Contains(recorded(out), int(sig)) {
					t.Errorf("signal %d reached the child", sig)
				}
				k.signal(syscall.SIGTERM)
				if code := k.wait(); code != 0 {
					t.Errorf("exit %d after SIGTERM, want 0", code)
				}
			})
		}
	}
}

// The child starts with no signal blocked and every signal at its default action, whatever mask
// and ignored signals koordinator itself was started with (koordinator catches signals to forward
// them; a blocked stop signal would turn every stop into a SIGKILL). The exception: 34, which no
// Go program can catch, stays ignored when koordinator was started with it ignored.
func TestSuiteChildSignalState(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sigmask := func(output, field string) uint64 {
		m := regexp.MustCompile(field + `:\s*([0-9a-f]{16})`).FindStringSubmatch(output)
		if m == nil {
			t.Fatalf("no %s in the output:\n%s", field, output)
		}
		v, _ := strconv.ParseUint(m[1], 16, 64)
		return v
	}
	for _, m := range modes {
		t.Run(string(m), func(t *testing.T) {
			k := startProgram(t, m, []string{suiteChildEnv + "=exec-with-signal-state"}, self,
				binary, "grep", "^Sig", "/proc/self/status")
			if code := k.wait(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			eventually(t, "the child's SigIgn line", func() bool { return strings.Contains(k.output(), "SigIgn") })
			out := k.output()
			if blk := sigmask(out, "SigBlk"); blk != 0 {
				t.Errorf("the child starts with signals blocked: SigBlk %016x (koordinator's parent blocked %v)", blk, parentBlocks)
			}
			if ign, want := sigmask(out, "SigIgn"), uint64(1)<<(34-1); ign != want {
				t.Errorf("the child starts with SigIgn %016x, want %016x (34 alone; koordinator's parent ignored %v)", ign, want, parentIgnores)
			}
		})
	}
}

// Under a terminal, ^C is for the interactive program: it reaches the child's process group (the
// terminal's foreground job) and not koordinator, so a REPL survives it and a program that dies
// of it makes koordinator exit 130. `kill -INT` to koordinator is still a termination signal.
func TestSuiteTerminalInterrupt(t *testing.T) {
	python, _ := exec.LookPath("python3")
	if python != "" {
		// The real interpreter, not a shim script in front of it.
		if out, err := exec.Command(python, "-c", "import sys; print(sys.executable)").Output(); err == nil {
			python = strings.TrimSpace(string(out))
		}
	}
	t.Run("python REPL survives ^C", func(t *testing.T) {
		if python == "" {
			t.Skip("no python3 here; the shell REPL below covers the case")
		}
		k := startIn(t, terminalMode, []string{"TERM=dumb", "PYTHONSTARTUP="}, python, "-q", "-i")
		k.waitOutput(">>> ", 1)
		k.typ("\x03")
		k.waitOutput("KeyboardInterrupt", 1)
		k.typ("print('sur' + 'vived')\n")
		k.waitOutput("survived", 1)
		k.typ("import sys; sys.exit(5)\n")
		if code := k.wait(); code != 5 {
			t.Errorf("exit %d, want the REPL's own 5", code)
		}
		notStopped(t, k)
	})
	t.Run("shell REPL survives ^C", func(t *testing.T) {
		k := startIn(t, terminalMode, nil, "sh", "-c", `trap 'echo interrupted-$((6*7))' INT; echo ready-$((6*7))
			while :; do read -r line || continue; [ "$line" = quit ] && exit 5; echo "got-$line"; done`)
		k.waitOutput("ready-42", 1)
		k.typ("\x03")
		k.waitOutput("interrupted-42", 1)
		k.typ("hello\n")
		k.waitOutput("got-hello", 1)
		k.typ("quit\n")
		if code := k.wait(); code != 5 {
			t.Errorf("exit %d, want the REPL's own 5", code)
		}
		notStopped(t, k)
	})
	t.Run("^C reaches the whole foreground job", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "signals")
		env, argv := recorder(t, out)
		k := startIn(t, terminalMode, env, "sh", "-c", `"$0" & wait; sleep 1000; exit 0`, argv[0])
		waitFileContains(t, out, "ready\n")
		k.typ("\x03")
		if code := k.wait(); code != 130 {
			t.Errorf("exit %d, want 130 (the shell killed by SIGINT)", code)
		}
		if got := recorded(out); !slices.Contains(got, int(syscall.SIGINT)) {
			t.Errorf("the grandchild did not get ^C: %v", got)
		}
		notStopped(t, k)
	})
	t.Run("kill -INT koordinator stops the child", func(t *testing.T) {
		k := startIn(t, terminalMode, nil, "sh", "-c", `trap 'echo got-INT-$((6*7))' INT; echo ready-$((6*7)); sleep 1000 & wait; exit 0`)
		k.waitOutput("ready-42", 1)
		k.signal(syscall.SIGINT)
		if code := k.wait(); code != 143 {
			t.Errorf("exit %d, want 143 (the child stopped with SIGTERM)", code)
		}
		if strings.Contains(k.output(), "got-INT-42") {
			t.Error("the child got SIGINT, not the stop signal")
		}
	})
}

// notStopped fails the test if koordinator took a termination signal.
func notStopped(t *testing.T, k *koord) {
	t.Helper()
	if strings.Contains(k.output(), "termination signal received") {
		t.Errorf("koordinator took ^C as a termination signal:\n%s", k.output())
	}
}

// Job-control shells work as koordinator's child: a job started in the foreground can be
// suspended with ^Z, resumed with fg and interrupted with ^C, and the shell lives on.
func TestSuiteTerminalJobControl(t *testing.T) {
	shells := [][]string{{"sh", "-i"}}
	if _, err := exec.LookPath("bash"); err == nil {
		shells = append(shells, []string{"bash", "--norc", "--noprofile", "--noediting", "-i"})
	}
	for _, shell := range shells {
		t.Run(shell[0], func(t *testing.T) {
			const prompt = "jc> "
			k := startIn(t, terminalMode, []string{"PS1=" + prompt, "TERM=dumb"}, shell...)
			k.waitOutput(prompt, 1)
			k.typ("sleep 1000\n")
			job := func(cond func(proctest.Stat) bool) func() bool {
				return func() bool {
					for _, pid := range descendants(k.pid()) {
						if st, ok := proctest.Read(pid); ok && st.Comm == "sleep" && cond(st) {
							return true
						}
					}
					return false
				}
			}
			foreground := func(st proctest.Stat) bool { return st.State != 'T' && st.Tpgid == st.Pgrp }
			eventually(t, "the job in the foreground", job(foreground))
			k.typ("\x1a") // ^Z
			eventually(t, "the job stopped", job(func(st proctest.Stat) bool { return st.State == 'T' }))
			k.waitOutput(prompt, 2)
			k.typ("fg\n")
			eventually(t, "the job back in the foreground", job(foreground))
			k.typ("\x03")
			eventually(t, "the job gone", func() bool { return !job(func(proctest.Stat) bool { return true })() })
			k.waitOutput(prompt, 3)
			k.typ("echo alive-$((6*7))\n")
			k.waitOutput("alive-42", 1)
			k.typ("exit 3\n")
			if code := k.wait(); code != 3 {
				t.Errorf("exit %d, want the shell's 3", code)
			}
			notStopped(t, k)
		})
	}
}

// When the child is done, the terminal goes back to koordinator's process group: a parent
// without job control that reads the terminal next is not left in the background (where its
// read would fail, or stop it).
func TestSuiteTerminalBackToParent(t *testing.T) {
	k := startProgram(t, terminalMode, nil, "/bin/sh", "-c",
		`"$0" sh -c 'exit 3'; echo "after-$?-$((6*7))"; read -r x; echo "read-$x-$((6*7))"`, binary)
	k.waitOutput("after-3-42", 1)
	k.typ("hi\n")
	k.waitOutput("read-hi-42", 1)
	if code := k.wait(); code != 0 {
		t.Errorf("the parent shell exited %d", code)
	}
}
