package supervise

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

const (
	// drainPoll is how often Drain checks whether the drained process group is gone, on top of
	// the reap notifications that usually answer first.
	drainPoll = 10 * time.Millisecond
	// drainKillWait bounds Drain's wait after it sent SIGKILL. SIGKILL cannot be caught, so only
	// a process stuck in uninterruptible sleep (a hung NFS mount, say) outlives it; Drain then
	// gives up rather than hold the container forever.
	drainKillWait = 5 * time.Second
)

// Child is a process started by Supervisor.Start.
type Child struct {
	s    *Supervisor
	pid  int
	pgid int // the child's process group; 0 when it shares koordinator's (stdin is a terminal)
	done chan struct{}

	// Guarded by s.mu.
	reaped   bool
	killSent bool // Stop sent SIGKILL while the child was unreaped
	exit     Exit
}

// Start starts argv[0], looked up in PATH like a shell does, with argv, the current
// environment, working directory, and stdin, stdout and stderr. The child leads its own process
// group, so signals and the final drain reach everything it starts; except when stdin is a
// terminal: then it stays in koordinator's process group, which is the terminal's foreground
// job, so it can read the terminal and gets ^C from it (`kubectl run -it`).
//
// Errors are *StartError carrying the shell's exit code: 127 when the command is not found,
// 126 when it is found but cannot be run.
func (s *Supervisor) Start(argv []string) (*Child, error) {
	if len(argv) == 0 || argv[0] == "" {
		return nil, &StartError{Code: 127, Err: errors.New("empty command")}
	}
	name := argv[0]
	path, err := lookPath(name)
	if err != nil {
		return nil, &StartError{Code: 127, Name: name, Err: err}
	}
	files := []uintptr{os.Stdin.Fd(), os.Stdout.Fd(), os.Stderr.Fd()}
	shared := isTerminal(files[0])
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: files,
		// Setpgid happens in the forked child before execve, and ForkExec returns only once
		// execve succeeded, so the group exists before anyone can signal it.
		Sys: &syscall.SysProcAttr{Setpgid: !shared},
	}

	// Holding mu across the fork keeps the reaper from calling wait4 until the pid is
	// registered: a child that dies at once is still recognised as ours. It also keeps the
	// reaper away from the short-lived process ForkExec forks and waits for itself when
	// execve fails.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, &StartError{Code: 126, Name: name, Err: errors.New("supervisor is closed")}
	}
	pid, err := syscall.ForkExec(path, argv, attr)
	if err != nil {
		s.mu.Unlock()
		return nil, execError(name, path, err)
	}
	c := &Child{s: s, pid: pid, done: make(chan struct{})}
	if !shared {
		c.pgid = pid
	}
	s.children[pid] = c
	s.mu.Unlock()
	// SIGCHLD was registered before the fork, so a child that already exited has a signal
	// queued; this extra pass costs nothing and does not depend on that.
	s.kick()
	return c, nil
}

// isTerminal reports whether fd is a terminal (ioctl TCGETS succeeds, as in isatty(3)).
func isTerminal(fd uintptr) bool {
	var t syscall.Termios
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return e == 0
}

// Pid is the child's process id.
func (c *Child) Pid() int { return c.pid }

// Done is closed when the child itself has exited and been reaped. The channel never changes.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exit is the child's result; valid once Done is closed (the zero Exit before).
func (c *Child) Exit() Exit {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.exit
}

// exited records the child's wait status. Called by the reaper with s.mu held.
func (c *Child) exited(ws syscall.WaitStatus) {
	c.reaped = true
	if ws.Signaled() {
		c.exit.Signal = ws.Signal()
		// Only our SIGKILL counts: one that came first from elsewhere (the OOM killer) was not
		// Stop's doing, and a child that ended some other way beat our SIGKILL to it.
		c.exit.KilledByStop = c.killSent && c.exit.Signal == syscall.SIGKILL
	} else {
		c.exit.Code = ws.ExitStatus()
	}
	close(c.done)
}

// Signal sends sig to the child's process group, or to the child alone when it shares
// koordinator's group. A child that has already exited is not an error; after the child
// exited, the signal still goes to what is left of its process group.
func (c *Child) Signal(sig syscall.Signal) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.signalLocked(sig)
}

// signalLocked is Signal with s.mu held. Holding mu means the reaper cannot reap the child
// between the check and the kill, so an unreaped pid is never a recycled one.
func (c *Child) signalLocked(sig syscall.Signal) error {
	if c.pgid == 0 {
		if c.reaped {
			return nil
		}
		return ignoreGone(syscall.Kill(c.pid, sig))
	}
	err := ignoreGone(syscall.Kill(-c.pgid, sig))
	// A child that moved itself to another process group (setpgid) would miss a signal sent
	// to the group it was started in, and a Stop would then wait forever: send it directly.
	if !c.reaped {
		if pg, e := syscall.Getpgid(c.pid); e == nil && pg != c.pgid {
			if e := ignoreGone(syscall.Kill(c.pid, sig)); err == nil {
				err = e
			}
		}
	}
	return err
}

func ignoreGone(err error) error {
	if err == nil || errors.Is(err, syscall.ESRCH) || errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Stop sends sig, waits up to timeout for the child to exit, then SIGKILLs its process group
// (or the child alone when it shares koordinator's group). It blocks until the child has
// exited; Exit then reports KilledByStop if the SIGKILL was needed. It returns at once, sending
// nothing, if the child has already exited.
//
// Calling it again while a Stop is under way is safe: each call sends sig again and whichever
// timeout ends first sends the SIGKILL, so Stop(sig, 0) escalates at once.
func (c *Child) Stop(sig syscall.Signal, timeout time.Duration) {
	if c.signalStop(sig) {
		c.killAfter(timeout)
	}
}

// StopAsync is Stop that returns as soon as sig is sent, leaving the wait and the SIGKILL to a
// goroutine: the caller keeps forwarding signals, and nothing it does next (or the start of a
// goroutine) delays the stop signal.
func (c *Child) StopAsync(sig syscall.Signal, timeout time.Duration) {
	if c.signalStop(sig) {
		go c.killAfter(timeout)
	}
}

// signalStop sends sig unless the child has already exited; it reports whether it sent it.
func (c *Child) signalStop(sig syscall.Signal) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	_ = c.Signal(sig) // the only possible failure is a gone child, which done reports
	return true
}

// killAfter SIGKILLs the child's group if the child has not exited within timeout, and returns
// once it has exited.
func (c *Child) killAfter(timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return
	case <-t.C:
	}
	c.s.mu.Lock()
	if !c.reaped {
		c.killSent = true
		_ = c.signalLocked(syscall.SIGKILL)
	}
	c.s.mu.Unlock()
	<-c.done
}

// Drain is what happens after the child exited (it waits for Done first): SIGTERM whatever is
// left of the child's process group, SIGKILL it if it is still there after grace, and wait until
// every member is gone and reaped (bounded: at most drainKillWait after the SIGKILL). It returns
// at once when the group is already empty, and is a no-op when the child shared koordinator's
// process group (there is no group of its own to drain).
//
// Processes that left the group (setsid, setpgid) are not drained; they are still reaped if
// they end while the Supervisor is open.
func (c *Child) Drain(grace time.Duration) {
	<-c.done
	if c.pgid == 0 {
		return
	}
	if c.groupGone(syscall.SIGTERM) || c.awaitGroupGone(grace) {
		return
	}
	if c.groupGone(syscall.SIGKILL) {
		return
	}
	c.awaitGroupGone(drainKillWait)
}

// groupGone sends sig (0 to probe) to the child's process group and reports whether the group
// no longer exists. A zombie still counts as a member until it is reaped, so a gone group is
// also a reaped one.
func (c *Child) groupGone(sig syscall.Signal) bool {
	return errors.Is(syscall.Kill(-c.pgid, sig), syscall.ESRCH)
}

// awaitGroupGone waits up to d for the child's process group to be gone. Reap notifications
// wake it as members are reaped; the ticker covers the rest (and kicks the reaper, in case a
// SIGCHLD was coalesced away in a way we did not foresee).
func (c *Child) awaitGroupGone(d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		reaped := c.s.reapNotify()
		if c.groupGone(0) {
			return true
		}
		select {
		case <-reaped:
		case <-tick.C:
			c.s.kick()
		case <-deadline.C:
			return c.groupGone(0)
		}
	}
}
