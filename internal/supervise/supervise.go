// Package supervise runs koordinator's child process the way a good PID 1 does: it starts the
// command in its own process group, forwards signals to that group, stops it with a signal and a
// SIGKILL deadline, reaps every zombie that ends up with this process (as PID 1 or as a child
// subreaper), and turns the child's end into a shell-style exit code.
//
// One rule shapes the package: a Supervisor is the only waiter for child processes in this
// process. A single goroutine calls wait4(-1, WNOHANG) on every SIGCHLD and recognises the
// child's pid; nothing else may call wait (no exec.Cmd.Wait, no os.Process.Wait), because two
// waiters race for the child's status and the loser loses the exit code.
//
// The package has no Kubernetes import and does not log: it returns values and errors, and the
// caller decides what to say.
package supervise

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>; the syscall package has no
// name for it.
const prSetChildSubreaper = 36

// active guards the one-waiter rule within this process: a second Supervisor would be a second
// waiter.
var active atomic.Bool

// Supervisor is the one and only waiter for child processes of this process. See New.
type Supervisor struct {
	sigc    chan os.Signal // SIGCHLD from signal.Notify, plus our own kicks; buffer 1 coalesces
	quit    chan struct{}  // closed by Close
	stopped chan struct{}  // closed when the reaping goroutine has returned

	subreaper bool // we set PR_SET_CHILD_SUBREAPER and unset it on Close
	closeOnce sync.Once

	// mu orders every wait4 against Start (fork and registering the pid) and against signals
	// sent to a child pid: a pid is only signalled while it is unreaped, so it cannot have
	// been reused by an unrelated process.
	mu       sync.Mutex
	closed   bool
	children map[int]*Child
	reaped   chan struct{} // closed and replaced after every reap pass that reaped something
}

// New makes this process the waiter for its children. Unless it is PID 1 (which the kernel
// already treats as the reaper of every orphan in its PID namespace) it becomes a child
// subreaper, so the child's orphaned descendants are reparented here rather than to the host's
// init, and can be reaped and drained. It starts one goroutine that, on every SIGCHLD, calls
// wait4(-1, WNOHANG) until nothing is left, recording the status of the children it started and
// discarding every other reaped pid (orphans).
//
// Create it before starting the child, so no SIGCHLD is missed, and Close it after the child is
// done and drained. Only one Supervisor may exist at a time.
func New() (*Supervisor, error) {
	if !active.CompareAndSwap(false, true) {
		return nil, errors.New("supervise: a Supervisor already exists in this process (there must be exactly one waiter)")
	}
	s := &Supervisor{
		sigc:     make(chan os.Signal, 1),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
		children: make(map[int]*Child),
		reaped:   make(chan struct{}),
	}
	if os.Getpid() != 1 {
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			active.Store(false)
			return nil, os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", e)
		}
		s.subreaper = true
	}
	// Registered before any child exists: a SIGCHLD that arrives from now on is queued in sigc.
	signal.Notify(s.sigc, syscall.SIGCHLD)
	go s.loop()
	return s, nil
}

// Close stops the reaping goroutine and the SIGCHLD registration, does a last reap pass, and
// gives up the subreaper role. Call it after the child is done and drained: a child that exits
// after Close is never reaped by this process and its Done never closes. Close is idempotent.
func (s *Supervisor) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true // no Start from now on: its child would never be reaped
		s.mu.Unlock()
		signal.Stop(s.sigc)
		close(s.quit)
		<-s.stopped
		s.reap()
		if s.subreaper {
			_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 0, 0)
		}
		active.Store(false)
	})
}

func (s *Supervisor) loop() {
	defer close(s.stopped)
	for {
		select {
		case <-s.sigc:
			s.reap()
		case <-s.quit:
			return
		}
	}
}

// kick asks the reaping goroutine for one more pass. It never blocks: a pending SIGCHLD or kick
// already guarantees a pass that starts after this call.
func (s *Supervisor) kick() {
	select {
	case s.sigc <- syscall.SIGCHLD:
	default:
	}
}

// reap calls wait4(-1, WNOHANG) until there is nothing left to reap. SIGCHLDs coalesce, so one
// signal may stand for many exits; looping until wait4 returns 0 (children left, none exited)
// or ECHILD (no children) is what makes that safe.
func (s *Supervisor) reap() {
	reapedSome := false
	for {
		var ws syscall.WaitStatus
		s.mu.Lock()
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			s.mu.Unlock()
			continue
		}
		if err != nil || pid <= 0 {
			s.mu.Unlock()
			break
		}
		reapedSome = true
		if c, ok := s.children[pid]; ok {
			delete(s.children, pid)
			c.exited(ws)
		}
		s.mu.Unlock()
	}
	if reapedSome {
		s.mu.Lock()
		close(s.reaped)
		s.reaped = make(chan struct{})
		s.mu.Unlock()
	}
}

// reapNotify returns a channel closed after the next reap pass that reaps anything.
func (s *Supervisor) reapNotify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reaped
}
