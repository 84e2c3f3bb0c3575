package spec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// signalNames are the standard Linux signals by number. The numbers are written out rather
// than taken from package syscall because they are the same on amd64 and arm64 and the
// package should build (and its tests run) on any system.
var signalNames = [...]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
	8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE",
	14: "SIGALRM", 15: "SIGTERM", 16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
	20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
	26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

// signalAliases are other names Linux gives the same signals.
var signalAliases = map[string]syscall.Signal{"SIGIOT": 6, "SIGCLD": 17, "SIGPOLL": 29}

const lastSignal = 64 // SIGRTMAX on Linux

// unfitToStop says why a signal cannot serve as stopSignal. Every other signal from 1 to 64
// can: even one the child ignores ends in SIGKILL after stopTimeout, and some servers stop
// on unusual ones (Apache httpd stops gracefully on SIGWINCH).
var unfitToStop = map[syscall.Signal]string{
	17: "which is ignored by default and means \"a child changed state\"",
	18: "which resumes a paused process instead of stopping it",
	19: "which only pauses the child (it cannot be caught), so every stop would end in SIGKILL",
	20: "which by default pauses the child instead of stopping it",
	21: "which by default pauses the child instead of stopping it",
	22: "which by default pauses the child instead of stopping it",
	23: "which is ignored by default, and Go programs use it internally",
	32: "which the C library reserves for its threads",
	33: "which the C library reserves for its threads",
}

// SignalName returns the conventional name of sig, like "SIGTERM", or "signal 34" for a
// signal without a portable name (the names of real-time signals depend on the C library).
func SignalName(sig syscall.Signal) string {
	if name, ok := signalName(sig); ok {
		return name
	}
	return "signal " + strconv.Itoa(int(sig))
}

func signalName(sig syscall.Signal) (string, bool) {
	if sig > 0 && int(sig) < len(signalNames) {
		return signalNames[sig], true
	}
	return "", false
}

// parseSignal reads "SIGTERM", "term" or "15". It returns the signal, or why the text is not
// usable as a stop signal, phrased to follow `"stopSignal" is "X"` in a message.
func parseSignal(text string) (syscall.Signal, string) {
	var sig syscall.Signal
	numeric := allDigits(strings.TrimPrefix(text, "-"))
	if numeric {
		n, err := strconv.Atoi(text)
		if err != nil || n < 1 || n > lastSignal {
			return 0, fmt.Sprintf(", but Linux signals are numbered 1 to %d", lastSignal)
		}
		sig = syscall.Signal(n)
	} else {
		name := strings.ToUpper(text)
		if !strings.HasPrefix(name, "SIG") {
			name = "SIG" + name
		}
		var ok bool
		if sig, ok = lookupSignalName(name); !ok {
			problem := fmt.Sprintf(`, which is not a signal name; use one like "SIGTERM" or "TERM", or a number from 1 to %d`, lastSignal)
			if s := suggest(name, signalNames[1:]); s != "" {
				problem += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return 0, problem
		}
	}
	if why, unfit := unfitToStop[sig]; unfit {
		named := ""
		if numeric {
			named = " (" + SignalName(sig) + ")"
		}
		return 0, fmt.Sprintf(`%s, %s; use "SIGTERM" (the default), "SIGINT" or "SIGQUIT"`, named, why)
	}
	return sig, ""
}

func lookupSignalName(name string) (syscall.Signal, bool) {
	for n, s := range signalNames {
		if s != "" && s == name {
			return syscall.Signal(n), true
		}
	}
	sig, ok := signalAliases[name]
	return sig, ok
}
