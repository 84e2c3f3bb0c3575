package supervise

import (
	"os"
	"syscall"
)

// Real-time signals. 32 and 33 are taken: the C library's thread cancellation and set*id
// broadcast, and the Go runtime uses 33 for the same per-thread syscalls. So the range that can
// be forwarded starts at 34 (the C library's SIGRTMIN); SIGRTMIN+3 is, for instance, systemd's
// shutdown signal.
const (
	sigRTMin = 34
	sigRTMax = 64
)

// ForwardedSignals lists every signal koordinator catches and passes on: all catchable signals
// except SIGCHLD (the reaper's), SIGURG (the Go runtime's preemption signal), SIGPROF (the
// runtime's profiler consumes it and never delivers it to a channel) and SIGPIPE (caught, never
// forwarded: see CaughtSignals). SIGKILL and SIGSTOP cannot be caught. The caller registers
// CaughtSignals with signal.Notify before it starts the child, handles SIGTERM and SIGINT itself
// (the stop sequence) and forwards the rest of these with Child.Signal.
//
// Registering them also means the child starts with every one of them at its default
// disposition (execve resets caught signals), even where koordinator's own parent ignored some.
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
	for s := sigRTMin; s <= sigRTMax; s++ {
		sigs = append(sigs, syscall.Signal(s))
	}
	return sigs
}

// CaughtSignals is what the caller registers: ForwardedSignals and SIGPIPE. The kernel raises
// SIGPIPE in koordinator itself when one of its writes meets a closed socket or pipe (the API
// server's connection as the server goes away, a log reader that has gone), and os/signal cannot
// tell that from a SIGPIPE sent with kill: forwarded, it would kill the child (exit 141) during
// an API outage. Caught, it leaves koordinator running (the write fails with EPIPE, which the
// caller handles) and the child's SIGPIPE at its default.
func CaughtSignals() []os.Signal { return append(ForwardedSignals(), caughtOnly) }

// caughtOnly is the one signal of CaughtSignals that is not forwarded.
const caughtOnly = syscall.SIGPIPE

// Forwarded reports whether a signal of CaughtSignals is passed on to the child.
func Forwarded(s syscall.Signal) bool { return s != caughtOnly }
