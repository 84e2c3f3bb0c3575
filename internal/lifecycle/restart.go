package lifecycle

import (
	"time"

	"go.uber.org/zap"
)

// Restarting the child inside its container (the spec's restartChild): under restartPolicy
// Never the kubelet never restarts a sidecar that crashed, and the Job's main would lose its
// proxy for good. koordinator starts the child again instead, while the container stays Running,
// with a back-off like the kubelet's crash-loop one, scaled down for a Job that is waiting:
// at once the first time, then 1 s doubling to 30 s, back to at once after a run of a minute.
const (
	restartBackoffBase = time.Second
	restartBackoffMax  = 30 * time.Second
	restartResetAfter  = time.Minute
)

// restartDelay is the back-off before restart number n (0: the first).
func restartDelay(n int) time.Duration {
	if n == 0 {
		return 0
	}
	d := restartBackoffBase
	for i := 1; i < n && d < restartBackoffMax; i++ {
		d *= 2
	}
	return min(d, restartBackoffMax)
}

// shouldRestart is the decision on a child that exited with code: the spec asks for restarts
// (OnFailure: only after a failure), and nothing is stopping this container — no stop
// condition, no stop signal sent, no termination signal received.
func shouldRestart(policy string, code int, stopping bool) bool {
	switch {
	case stopping:
		return false
	case policy == "Always":
		return true
	case policy == "OnFailure":
		return code != 0
	}
	return false
}

// restartLater takes the child's exit when the spec restarts it: it logs and publishes the
// exit as a restart, drains what is left of the child's group and arms the back-off. false
// means no restart: the caller finishes as usual.
func (l *loop) restartLater() bool {
	exit := l.child.Exit()
	if !shouldRestart(l.cfg.Spec.RestartChild, exit.ExitCode(), l.stopping()) {
		return false
	}
	now := time.Now()
	if now.Sub(l.childStartedAt) >= restartResetAfter {
		l.restarts = 0
	}
	delay := restartDelay(l.restarts)
	l.restarts++
	l.log.Info("child exited; restarting it", zap.Int("code", exit.ExitCode()), zap.Duration("after", delay),
		zap.String("restartChild", l.cfg.Spec.RestartChild), zap.Int("restarts", l.restarts))
	if p := l.publisher(); p != nil {
		l.publishFailed(p.Restarting(exit.ExitCode(), now))
	}
	l.child.Drain(drainGrace)
	l.restartTimer = time.NewTimer(delay)
	return true
}

// stopping reports whether a stop of this container has begun: the stop condition held, the
// stop signal went out, or a termination signal came.
func (l *loop) stopping() bool { return l.stopSent || l.stopReason != noStop || l.terms > 0 }

// restartWaitOver reports whether a stop began while the child was waiting to be started
// again: then it is not started, and koordinator ends with what the last child's exit means.
func (l *loop) restartWaitOver() bool {
	if l.restartTimer == nil || !l.stopping() {
		return false
	}
	l.restartTimer.Stop()
	l.restartTimer = nil
	return true
}

// finishAfterRestartWait ends koordinator when a stop began while the child waited to be
// started again: with terminatedByStopDepExitCode when its stop dependencies exited (the child
// would have been stopped now anyway), else with the last child's own code.
func (l *loop) finishAfterRestartWait() int {
	code, reason := l.child.Exit().ExitCode(), "child exited, and a stop began before it was started again"
	if l.stopReason == stopDepsExited {
		code, reason = l.cfg.Spec.TerminatedByStopDepExitCode, "stop dependencies exited while the child waited to be started again"
	}
	l.publishExited(code)
	return l.exit(code, reason)
}
