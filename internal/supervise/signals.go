package supervise

import (
	"os"
	"syscall"
)

// Real-time signals. The Go runtime keeps 32, 33 and 34 for the C library's threads and its
// own (glibc's SIGCANCEL and SIGSETXID, musl's SIGSYNCCALL): signal.Notify cannot catch them, so
// they cannot be forwarded, and the forwarded range starts at 35. What each does to
// koordinator: 33 reaches the runtime's own handler, which drops it; 32 and 34 get no handler,
// so they keep their default action and end koordinator, unless it is PID 1 (the kernel drops a
// signal PID 1 has no handler for) or was started with them ignored. Start's Pdeathsig makes
// the child die with koordinator rather than run on unsupervised.
const (
	sigRTForwarded = 35
	sigRTMax       = 64
)

// ForwardedSignals lists every signal koordinator catches and passes on: all catchable signals
// except SIGCHLD (the reaper's), SIGURG (the Go runtime's preemption signal), SIGPROF (the
// runtime's profiler consumes it and never delivers it to a channel), 32 to 34 (see above) and
// SIGPIPE (caught, never forwarded: see CaughtSignals). SIGKILL and SIGSTOP cannot be caught.
// The caller registers CaughtSignals with signal.Notify before it starts the child, handles
// SIGTERM and SIGINT itself (the stop sequence) and forwards the rest of these with
// Child.Signal. When Start makes the child the terminal's foreground job it ignores SIGTTIN and
// SIGTTOU from then on, so those two stop arriving.
//
// Synchronous faults in koordinator itself (a real SIGSEGV) still crash it as usual: the Go
// runtime only delivers signals sent with kill to the channel.
func ForwardedSignals() []os.Signal {
	sigs := []os.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
		syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGUSR1, syscall.SIGSEGV,
		syscall.SIGUSR2, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGSTKFLT,
		syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGXCPU,
		syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGWINCH, syscall.SIGIO, syscall.SIGPWR,
		syscall.SIGSYS,
	}
	for s := sigRTForwarded; s <= sigRTMax; s++ {
		sigs = append(sigs, syscall.Signal(s))
	}
	return sigs
}

// CaughtSignals is what the caller registers: ForwardedSignals and SIGPIPE. The kernel raises
// SIGPIPE in koordinator itself when one of its writes meets a closed socket or pipe (the API
// server's connection as the server goes away, a log reader that has gone), and os/signal cannot
// tell that from a SIGPIPE sent with kill: forwarded, it would kill the child (exit 141) during
// an API outage. Caught, it leaves koordinator running (the write fails with EPIPE, which the
// caller handles).
func CaughtSignals() []os.Signal { return append(ForwardedSignals(), caughtOnly) }

// caughtOnly is the one signal of CaughtSignals that is not forwarded.
const caughtOnly = syscall.SIGPIPE

// Forwarded reports whether a signal of CaughtSignals is passed on to the child.
func Forwarded(s syscall.Signal) bool { return s != caughtOnly }
