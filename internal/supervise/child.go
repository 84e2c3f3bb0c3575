package supervise

import (
	"errors"
	"os"
	"os/signal"
	"runtime"
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

// Child is a process started by Supervisor.Start. It leads its own process group, whose id is
// its pid.
type Child struct {
	s          *Supervisor
	pid        int
	stdin      uintptr // the terminal, when foreground
	foreground bool    // Start made the child's group the terminal's foreground job
	done       chan struct{}

	// Guarded by s.mu.
	reaped   bool
	killSent bool // Stop sent SIGKILL while the child was unreaped
	exit     Exit
}

// Start starts argv[0], looked up in PATH like a shell does, with argv, the current
// environment, working directory, and stdin, stdout and stderr. The child leads its own process
// group, so signals and the final drain reach everything it starts.
//
// When stdin is this process's controlling terminal and this process's group is the terminal's
// foreground job (`kubectl run -it`), the child's group becomes the foreground job instead, as
// a shell does for a command: the terminal's ^C, ^Z and ^\ reach the child and what it starts,
// and not this process. This process then ignores SIGTTIN and SIGTTOU: as a background process
// of the terminal it gets them from the kernel only about its own use of the terminal (its log
// lines with `stty tostop`, handing the terminal back in Drain), and passed on they would stop
// the child.
//
// The child starts with no signal blocked and every signal at its default action: execve resets
// the signals this process catches, and the fork happens on a thread with an empty mask. 32 and
// 34, which no Go program can catch, keep the disposition this process inherited. It is killed
// (SIGKILL) if this process dies before it, as a container's processes are when its PID 1 dies.
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
	stdin := os.Stdin.Fd()
	foreground := isForeground(stdin)
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{stdin, os.Stdout.Fd(), os.Stderr.Fd()},
		// All of this happens in the forked child before execve, and ForkExec returns only once
		// execve succeeded, so the group exists (and owns the terminal) before anyone can signal
		// it. The child does the TIOCSPGRP with every signal blocked, so no SIGTTOU stops it.
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Foreground: foreground,
			Ctty:       int(stdin), // for Foreground: a descriptor of this process
			Pdeathsig:  syscall.SIGKILL,
		},
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
	c := &Child{s: s, stdin: stdin, foreground: foreground, done: make(chan struct{})}
	c.pid, err = c.forkExec(path, argv, attr)
	if err != nil {
		s.mu.Unlock()
		return nil, execError(name, path, err)
	}
	s.children[c.pid] = c
	s.mu.Unlock()
	if foreground {
		signal.Ignore(syscall.SIGTTIN, syscall.SIGTTOU) // after the fork: the child must not inherit it
	}
	// SIGCHLD was registered before the fork, so a child that already exited has a signal
	// queued; this extra pass costs nothing and does not depend on that.
	s.kick()
	return c, nil
}

// forkExec runs syscall.ForkExec on an OS thread of its own, with an empty signal mask, that
// stays locked until the child has been reaped.
//
// The mask: the runtime saves the forking thread's mask and the child restores it before
// execve. A Go thread's mask is the one this process inherited minus what the runtime unblocks,
// so a parent's blocked signals would otherwise reach the child.
//
// The thread: the kernel sends Pdeathsig when the thread that forked the child ends, not the
// process (go.dev/issue/27505). The runtime ends a thread only when a goroutine returns while
// locked to it; this one stays locked, and parked, until the child is reaped, then goes back to
// the runtime's pool with its mask restored.
func (c *Child) forkExec(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	type forked struct {
		pid int
		err error
	}
	res := make(chan forked, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // deferred first, so it runs after the mask is restored
		var empty, old uint64
		if setSigmask(&empty, &old) == nil {
			defer func() { _ = setSigmask(&old, nil) }()
		}
		pid, err := syscall.ForkExec(path, argv, attr)
		res <- forked{pid, err}
		if err == nil {
			<-c.done
		}
	}()
	r := <-res
	return r.pid, r.err
}

// setSigmask sets the calling thread's signal mask (rt_sigprocmask SIG_SETMASK), saving the old
// one in old unless it is nil.
func setSigmask(set, old *uint64) error {
	const sigSetmask = 2
	_, _, e := syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, sigSetmask,
		uintptr(unsafe.Pointer(set)), uintptr(unsafe.Pointer(old)), unsafe.Sizeof(*set), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// isForeground reports whether fd is this process's controlling terminal with this process's
// group as its foreground job: tcgetpgrp(3) fails with ENOTTY on any other file or terminal.
func isForeground(fd uintptr) bool {
	var pgrp int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
	return e == 0 && int(pgrp) == syscall.Getpgrp()
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

// Signal sends sig to the child's process group. A child that has already exited is not an
// error; after the child exited, the signal still goes to what is left of its process group.
func (c *Child) Signal(sig syscall.Signal) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.signalLocked(sig)
}

// signalLocked is Signal with s.mu held. Holding mu means the reaper cannot reap the child
// between the check and the kill, so an unreaped pid is never a recycled one.
func (c *Child) signalLocked(sig syscall.Signal) error {
	err := ignoreGone(syscall.Kill(-c.pid, sig))
	// A child that moved itself to another process group (setpgid) would miss a signal sent
	// to the group it was started in, and a Stop would then wait forever: send it directly.
	if !c.reaped {
		if pg, e := syscall.Getpgid(c.pid); e == nil && pg != c.pid {
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

// Stop sends sig, waits up to timeout for the child to exit, then SIGKILLs its process group.
// It blocks until the child has exited; Exit then reports KilledByStop if the SIGKILL was
// needed. It returns at once, sending nothing, if the child has already exited.
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
// at once when the group is already empty. When Start made the child the terminal's foreground
// job, Drain then makes this process's group the foreground job again.
//
// Processes that left the group (setsid, setpgid) are not drained; they are still reaped if
// they end while the Supervisor is open.
func (c *Child) Drain(grace time.Duration) {
	<-c.done
	if c.foreground {
		defer c.takeTerminalBack()
	}
	if c.groupGone(syscall.SIGTERM) || c.awaitGroupGone(grace) {
		return
	}
	if c.groupGone(syscall.SIGKILL) {
		return
	}
	c.awaitGroupGone(drainKillWait)
}

// takeTerminalBack makes this process's group the terminal's foreground job again, unless a
// live group other than the child's holds it (a job the child started in a group of its own).
// A parent that reads the terminal next, like a script without job control, would otherwise
// find itself in the background. This process ignores SIGTTOU by now, so the kernel lets it.
func (c *Child) takeTerminalBack() {
	var fg int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, c.stdin, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg))); e != 0 {
		return
	}
	if int(fg) != c.pid && !errors.Is(syscall.Kill(-int(fg), 0), syscall.ESRCH) {
		return
	}
	own := int32(syscall.Getpgrp())
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, c.stdin, syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&own)))
}

// groupGone sends sig (0 to probe) to the child's process group and reports whether the group
// no longer exists. A zombie still counts as a member until it is reaped, so a gone group is
// also a reaped one.
func (c *Child) groupGone(sig syscall.Signal) bool {
	return errors.Is(syscall.Kill(-c.pid, sig), syscall.ESRCH)
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
