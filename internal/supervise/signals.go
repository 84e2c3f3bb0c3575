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

// ForwardedSignals lists every signal koordinator can catch and pass on: all catchable signals
// except SIGCHLD (the reaper's), SIGURG (the Go runtime's preemption signal) and SIGPROF (the
// runtime's profiler consumes it and never delivers it to a channel). SIGKILL and SIGSTOP
// cannot be caught. The caller registers them with signal.Notify before it starts the child,
// handles SIGTERM and SIGINT itself (the stop sequence) and forwards the rest with Child.Signal.
//
// Registering them also means the child starts with every one of them at its default
// disposition (execve resets caught signals), even where koordinator's own parent ignored some.
// Synchronous faults in koordinator itself (a real SIGSEGV) still crash it as usual: the Go
// runtime only delivers signals sent with kill to the channel.
func ForwardedSignals() []os.Signal {
	sigs := []os.Signal{
		syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGILL, syscall.SIGTRAP,
		syscall.SIGABRT, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGUSR1, syscall.SIGSEGV,
		syscall.SIGUSR2, syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTERM, syscall.SIGSTKFLT,
		syscall.SIGCONT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGXCPU,
		syscall.SIGXFSZ, syscall.SIGVTALRM, syscall.SIGWINCH, syscall.SIGIO, syscall.SIGPWR,
		syscall.SIGSYS,
	}
	for s := sigRTMin; s <= sigRTMax; s++ {
		sigs = append(sigs, syscall.Signal(s))
	}
	return sigs
}
