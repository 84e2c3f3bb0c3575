// Package lifecycle is koordinator's one decision loop: it waits for the start dependencies,
// starts the child, forwards signals, decides when and how to stop the child, and turns the
// outcome into koordinator's exit code. The informer, the state-file watcher, the signal
// handler, the child's exit and the timers only send events; this loop alone acts on them.
//
// The loop also speaks on the pod-local channel (internal/podlocal): it publishes its child's
// start and exit in the shared folder, and with stop dependencies it reads theirs, so that a
// dependency's exit counts as soon as either the API or its state file shows it final
// (watch.StopStateWith).
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/koordinator-dev/koordinator/internal/podlocal"
	"github.com/koordinator-dev/koordinator/internal/probe"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/stopaction"
	"github.com/koordinator-dev/koordinator/internal/supervise"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// ExitConfig is koordinator's own exit code when it cannot proceed: bad spec, unknown pod,
// invalid dependencies, startTimeout.
const ExitConfig = 125

// drainGrace is how long leftovers of the child's process group get after SIGTERM.
const drainGrace = 2 * time.Second

// settleDelay is how long start-up must be over before Config.Settled runs, so a short-lived
// child's wrapper never pays for it.
const settleDelay = time.Second

// pendingEvery bounds how often the still-pending start dependencies are logged.
const pendingEvery = 30 * time.Second

// Config is everything Run needs; cmd/koordinator fills it from the process's environment.
type Config struct {
	Spec      spec.Spec
	RawSpec   string   // the literal KOORDINATOR_SPEC text, to recognise our own container
	Command   []string // the child's argv
	SelfArgv  []string // koordinator's own argv, to recognise our own container
	Namespace string
	PodName   string
	// Connect returns the list/watch of the own pod. Called only when a container is a dependency.
	Connect func() (cache.ListerWatcher, error)
	// Signals delivers every signal of supervise.CaughtSignals.
	Signals <-chan os.Signal
	Log     *zap.Logger
	// Started is when the process started; startTimeout and wait times count from it.
	Started time.Time
	// PodLocalDir is the folder holding the koordinator binary (the shared emptyDir); the
	// pod-local channel lives in its .state subfolder. "" turns the channel off
	// (KOORDINATOR_LOCAL_STATE=off): nothing is published or watched, only the API counts.
	PodLocalDir string
	// MountInfo is the file read to find this container's name when neither the spec nor the
	// pod tells it; "" means /proc/self/mountinfo.
	MountInfo string
	// Settled, when set, runs once in its own goroutine settleDelay after start-up is over: the
	// child has started (and the pod was seen, with dependencies), or the first pod state left
	// the start dependencies pending. From then on koordinator mostly waits. pod is the pod's
	// state as last seen then (never mutated; nil without dependencies); running tells whether
	// the child runs, so whether the next reaction is a stop or the start.
	Settled func(pod *corev1.Pod, running bool)
}

// Run coordinates the child until it has exited and returns koordinator's exit code.
func Run(ctx context.Context, cfg Config) int {
	sup, err := supervise.New()
	if err != nil {
		cfg.Log.Error("cannot supervise children", zap.Error(err))
		return ExitConfig
	}
	defer sup.Close()

	l := &loop{cfg: cfg, sup: sup, log: cfg.Log, readyAt: map[string]time.Duration{}, fileWarned: map[string]time.Time{},
		startDeps: cfg.Spec.StartDeps, stopDeps: cfg.Spec.StopDeps}
	if cfg.Spec.Name != "" {
		l.self = cfg.Spec.Name
	}
	code := l.run(ctx)
	l.publishExited(code) // when it ends without a child: bad dependencies, SIGTERM while waiting
	return code
}

// stopReason says why the child is being stopped; it decides the exit code.
type stopReason int

const (
	noStop stopReason = iota
	stopDepsExited
	terminationSignal
	gracePeriodEnds
)

func (r stopReason) String() string {
	switch r {
	case stopDepsExited:
		return "stop dependencies exited"
	case terminationSignal:
		return "termination signal"
	case gracePeriodEnds:
		return "grace period ends"
	}
	return "none"
}

type loop struct {
	cfg  Config
	sup  *supervise.Supervisor
	log  *zap.Logger
	self string

	// The container dependencies in force: the spec's, less the optional ones the pod lacks.
	startDeps, stopDeps []string

	pod       *corev1.Pod
	validated bool
	readyAt   map[string]time.Duration

	child      *supervise.Child
	actionDone chan error // the stop action's result, once it is under way

	// restartChild: when the child started, how often it was restarted, and the back-off timer
	// while an exited child waits to be started again.
	childStartedAt time.Time
	restarts       int
	restartTimer   *time.Timer

	// lw lists and watches the pod (nil without dependencies); relisted delivers the one list
	// made after a termination signal while the watch is closed (nil when none is under way).
	lw       cache.ListerWatcher
	relisted chan *corev1.Pod

	terms      int       // termination signals received
	termAt     time.Time // first one
	holdTimer  *time.Timer
	stopReason stopReason
	stopAt     time.Time // when the stop condition first held
	stopSent   bool
	delayTimer *time.Timer

	lastAPIWarning time.Time
	settled        bool

	// The pod-local channel.
	pub           *podlocal.Publisher // this container's state file; nil when off or nameless
	pubResolved   bool                // the own name was looked for (once)
	pubFailed     bool                // a failed write was logged (once)
	exitPublished bool
	local         *podlocal.Watcher         // the stop dependencies' state files; nil when off
	files         map[string]podlocal.State // as last read
	fileWarned    map[string]time.Time      // per file, the last warning logged
}

func (l *loop) run(ctx context.Context) int {
	l.log.Info("spec", zap.Any("spec", l.cfg.Spec))
	if !l.cfg.Spec.HasDeps() {
		if code, ok := l.start(); !ok {
			return code
		}
		l.settle()
		return l.supervise(ctx, nil)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if deps := l.stopDeps; len(deps) > 0 && l.cfg.PodLocalDir != "" {
		// Before the API: by the time the child starts, what the files say is known.
		l.local = podlocal.Watch(ctx, l.cfg.PodLocalDir, deps, podlocal.Options{})
		defer func() { cancel(); <-l.local.Done() }()
		l.log.Debug("watching the stop dependencies' state files",
			zap.String("folder", podlocal.Dir(l.cfg.PodLocalDir)), zap.Bool("inotify", l.local.Inotify()))
	}
	if l.cfg.Spec.NoAPI && len(l.stopDeps) > 0 {
		if l.local == nil {
			return l.exit(ExitConfig, `with "api": false the stop dependencies are known only through the pod-local channel, which KOORDINATOR_LOCAL_STATE=off turns off: remove one of the two`)
		}
		// The rules judge the state files against the pod the spec states.
		l.pod = watch.AssumedPod(corev1.RestartPolicy(l.cfg.Spec.PodRestartPolicy), l.stopDeps...)
		l.log.Info("without the API: the stop dependencies' exits come from their state files alone",
			zap.String("podRestartPolicy", l.cfg.Spec.PodRestartPolicy))
	}
	var w *watch.Watcher
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if l.cfg.Spec.NeedsAPI() {
		lw, err := l.cfg.Connect()
		if err != nil {
			return l.exit(ExitConfig, "cannot reach the Kubernetes API", zap.Error(err))
		}
		l.lw = lw
		w = watch.Start(watchCtx, lw)
	}
	if code, ok := l.wait(ctx, w); !ok {
		return code
	}
	if w != nil && len(l.stopDeps) == 0 {
		// Nothing after the start depends on the pod: do not hold a watch on the API server
		// for the child's whole life.
		stopWatch()
		l.log.Debug("no stop dependencies: pod watch closed")
		w = nil
	}
	return l.supervise(ctx, w)
}

// wait runs until the start dependencies are Ready and the child has started (ok), or
// koordinator has to give up (the exit code). w is nil when no container is a dependency.
func (l *loop) wait(ctx context.Context, w *watch.Watcher) (int, bool) {
	localPending := map[spec.LocalDep]bool{}
	for _, d := range l.cfg.Spec.LocalStartDeps {
		localPending[d] = true
	}
	var localReady <-chan spec.LocalDep
	if len(localPending) > 0 {
		probeCtx, stopProbes := context.WithCancel(ctx)
		defer stopProbes()
		localReady = probe.Watch(probeCtx, l.cfg.Spec.LocalStartDeps, l.cfg.Spec.ProbeInterval)
	}
	// pendingNow lists what the child still waits for: containers (from the latest pod state)
	// and local checks.
	pendingNow := func() []string {
		var p []string
		if w != nil {
			p = watch.StartState(l.pod, l.startDeps).Pending
		}
		for _, d := range l.cfg.Spec.LocalStartDeps {
			if localPending[d] {
				p = append(p, d.String())
			}
		}
		return p
	}
	// canStart says whether every start dependency is Ready now. With container dependencies
	// the pod must have been seen (and validated) first.
	canStart := func() bool {
		if w != nil && (l.pod == nil || !watch.StartState(l.pod, l.startDeps).CanStart()) {
			return false
		}
		return len(localPending) == 0
	}
	if w == nil && canStart() {
		return l.start() // nothing to wait for: only stop dependencies, without the API
	}
	if p := pendingNow(); len(p) > 0 {
		l.log.Info("waiting for start dependencies", zap.Strings("pending", p))
	}
	var timeout <-chan time.Time
	if d := l.cfg.Spec.StartTimeout; d > 0 {
		t := time.NewTimer(d - time.Since(l.cfg.Started))
		defer t.Stop()
		timeout = t.C
	}
	pending := time.NewTicker(pendingEvery)
	defer pending.Stop()
	localStates, localWarnings := l.localChannels()
	var pods <-chan *corev1.Pod
	var apiErrs <-chan error
	var notFound <-chan struct{}
	if w != nil {
		pods, apiErrs, notFound = w.Pods(), w.Errors(), w.NotFound()
	} else {
		l.settle() // nothing to see first: from now on koordinator waits
	}

	for {
		select {
		case <-ctx.Done():
			return l.exit(ExitConfig, "cancelled while waiting"), false
		case sig := <-l.cfg.Signals:
			if code, ok := l.signalBeforeStart(sig.(syscall.Signal)); !ok {
				return code, false
			}
		case <-notFound:
			return l.exit(ExitConfig, fmt.Sprintf("pod %s/%s not found: set KOORDINATOR_POD_NAME and KOORDINATOR_POD_NAMESPACE (downward API) to this pod's name and namespace",
				l.cfg.Namespace, l.cfg.PodName)), false
		case err := <-apiErrs:
			l.apiTrouble(err)
		case files := <-localStates:
			l.seeFiles(files)
		case warning := <-localWarnings:
			l.localWarning(warning)
		case <-timeout:
			return l.exit(ExitConfig, "startTimeout expired before the start dependencies were Ready",
				zap.Duration("startTimeout", l.cfg.Spec.StartTimeout), zap.Strings("pending", pendingNow())), false
		case <-pending.C:
			if w != nil && l.pod == nil {
				l.log.Info("waiting for the pod to be seen through the API")
				continue
			}
			l.log.Info("waiting for start dependencies", zap.Strings("pending", pendingNow()))
		case d := <-localReady:
			delete(localPending, d)
			l.log.Info("dependency ready", zap.String("dependency", d.String()), zap.Duration("waited", time.Since(l.cfg.Started)))
			if canStart() {
				return l.start()
			}
		case pod := <-pods:
			if code, ok := l.see(pod); !ok {
				return code, false
			}
			v := watch.StartState(pod, l.startDeps)
			l.logNewlyReady(l.startDeps, v)
			if len(v.Failed) > 0 {
				f := v.Failed[0]
				return l.exit(ExitConfig, fmt.Sprintf("start dependency %q exited (code %d) and will not run again, so it can never become Ready", f.Name, f.ExitCode)), false
			}
			if v.CanStart() && len(localPending) == 0 { // canStart, without judging the pod again

				return l.start()
			}
			l.settle()
		}
	}
}

// settle arranges for cfg.Settled to run, once.
func (l *loop) settle() {
	if l.settled || l.cfg.Settled == nil {
		return
	}
	l.settled = true
	pod, running, settled := l.pod, l.child != nil, l.cfg.Settled
	time.AfterFunc(settleDelay, func() { settled(pod, running) })
}

// see takes a new state of the pod; the first one validates the dependencies.
func (l *loop) see(pod *corev1.Pod) (int, bool) {
	l.pod = pod
	l.log.Debug("pod state", zap.String("resourceVersion", pod.ResourceVersion))
	if l.validated {
		return 0, true
	}
	l.validated = true
	name, found := watch.FindSelf(pod, l.cfg.SelfArgv, l.cfg.RawSpec)
	switch {
	case l.self == "" && found:
		l.self = name
		l.log = l.log.With(zap.String("container", name))
	case found && name != l.self:
		// A copied spec, say. The dependencies were checked against the wrong name (a
		// self-dependency would go unseen and hang the pod), and publishing under another
		// container's name could stop that container's dependents.
		l.pubResolved = true
		return l.exit(ExitConfig, fmt.Sprintf("the spec's name is %q but this process runs in container %q of pod %s/%s: set \"name\" to %q, or remove it (koordinator finds it from the pod)",
			l.self, name, pod.Namespace, pod.Name, name)), false
	}
	l.skipAbsentOptional(pod)
	if err := watch.ValidateDeps(pod, l.self, l.startDeps, l.stopDeps); err != nil {
		return l.exit(ExitConfig, err.Error()), false
	}
	return 0, true
}

// skipAbsentOptional drops the optional dependencies that name no container of the pod (a
// sidecar injected in some namespaces only), with one line each.
func (l *loop) skipAbsentOptional(pod *corev1.Pod) {
	names := watch.ContainerNames(pod)
	for _, o := range l.cfg.Spec.Optional {
		if slices.Contains(names, o) {
			continue
		}
		absent := func(d string) bool { return d == o }
		l.startDeps = slices.DeleteFunc(slices.Clone(l.startDeps), absent)
		l.stopDeps = slices.DeleteFunc(slices.Clone(l.stopDeps), absent)
		l.log.Info("optional dependency is not a container of this pod; skipped", zap.String("dependency", o))
	}
}

func (l *loop) logNewlyReady(deps []string, v watch.StartVerdict) {
	for _, d := range deps {
		if _, seen := l.readyAt[d]; seen || slices.Contains(v.Pending, d) || slices.ContainsFunc(v.Failed, func(f watch.DepFailure) bool { return f.Name == d }) {
			continue
		}
		wait := time.Since(l.cfg.Started)
		l.readyAt[d] = wait
		l.log.Info("dependency ready", zap.String("dependency", d), zap.Duration("waited", wait))
	}
}

// start starts the child; !ok means it could not be started and the int is the exit code.
func (l *loop) start() (int, bool) {
	if code, ok := l.noTerminationYet(); !ok {
		return code, false
	}
	if l.stopper() {
		l.log.Info("stopper: no child; waiting for the stop dependencies", zap.Stringer("stopAction", l.cfg.Spec.StopAction))
		return 0, true
	}
	child, err := l.sup.Start(l.cfg.Command)
	if err != nil {
		var se *supervise.StartError
		if errors.As(err, &se) {
			return l.exit(se.Code, "cannot start the command", zap.Error(err)), false
		}
		return l.exit(126, "cannot start the command", zap.Error(err)), false
	}
	l.child, l.childStartedAt = child, time.Now()
	l.publishStarted()
	l.log.Info("child started", zap.Int("pid", child.Pid()), zap.Strings("command", l.cfg.Command))
	return 0, true
}

// noTerminationYet takes the signals that came in before the child starts: a termination
// signal means the child must not start (!ok, and the exit code 128+N); others are dropped,
// as while waiting for the start dependencies.
func (l *loop) noTerminationYet() (int, bool) {
	for {
		select {
		case sig := <-l.cfg.Signals:
			if code, ok := l.signalBeforeStart(sig.(syscall.Signal)); !ok {
				return code, false
			}
		default:
			return 0, true
		}
	}
}

// signalBeforeStart handles a signal that came before the child started: a termination signal
// ends koordinator with 128+N (!ok), any other is dropped (there is no one to forward it to).
func (l *loop) signalBeforeStart(s syscall.Signal) (int, bool) {
	if isTermination(s) {
		l.terms++
		return l.exit(128+int(s), "signal before the child started", zap.String("signal", spec.SignalName(s))), false
	}
	l.log.Debug("signal ignored before the child started", zap.String("signal", spec.SignalName(s)))
	return 0, true
}

// supervise runs while the child runs: it forwards signals, decides the stop, and returns the
// exit code once the child has exited.
func (l *loop) supervise(ctx context.Context, w *watch.Watcher) int {
	var pods <-chan *corev1.Pod
	var apiErrs <-chan error
	if w != nil {
		pods, apiErrs = w.Pods(), w.Errors()
	}
	localStates, localWarnings := l.localChannels()
	if l.pod != nil {
		l.checkStop()
		l.settle()
	}
	if l.stopper() && len(l.stopDeps) == 0 {
		// Every stop dependency was optional and the pod has none of them: nothing to wait for.
		l.triggerStop(stopDepsExited, false)
	}
	done := ctx.Done()
	for {
		if l.restartWaitOver() {
			return l.finishAfterRestartWait()
		}
		select {
		case <-l.childDone():
			if l.restartLater() {
				continue
			}
			return l.finish()
		case <-timerC(l.restartTimer):
			l.restartTimer = nil
			if code, ok := l.start(); !ok {
				return code
			}
		case err := <-l.actionDone:
			l.actionDone = nil
			if code, done := l.afterAction(err); done {
				return code
			}
		case <-done:
			done = nil
			l.terms++
			l.triggerStop(terminationSignal, true)
		case sig := <-l.cfg.Signals:
			s := sig.(syscall.Signal)
			if isTermination(s) {
				l.onTermination(ctx, s)
				continue
			}
			if !supervise.Forwarded(s) || l.child == nil {
				l.log.Debug("signal not forwarded", zap.String("signal", spec.SignalName(s)))
				continue
			}
			if err := l.child.Signal(s); err != nil {
				l.log.Warn("cannot forward signal", zap.String("signal", spec.SignalName(s)), zap.Error(err))
			}
		case pod := <-pods:
			l.see(pod)
			l.checkStop()
		case err := <-apiErrs:
			l.apiTrouble(err)
		case files := <-localStates:
			l.seeFiles(files)
			l.checkStop()
		case warning := <-localWarnings:
			l.localWarning(warning)
		case <-timerC(l.holdTimer):
			l.holdTimer = nil
			l.triggerStop(gracePeriodEnds, true)
		case <-timerC(l.delayTimer):
			l.delayTimer = nil
			l.sendStop()
		case pod := <-l.relisted:
			l.relisted = nil
			if pod != nil {
				l.see(pod)
				l.log.Debug("stop deadline", zap.Time("latest", l.holdDeadline()), zap.Bool("deletion", pod.DeletionTimestamp != nil))
				l.armDelay()
			}
		}
	}
}

// onTermination handles SIGTERM/SIGINT to koordinator. The first one stops the child once its
// stop dependencies have exited, but never later than the pod's grace period allows; a second
// one cuts every wait short; after the stop signal went out they are forwarded as they are.
func (l *loop) onTermination(ctx context.Context, s syscall.Signal) {
	l.terms++
	l.log.Info("termination signal received", zap.String("signal", spec.SignalName(s)), zap.Int("count", l.terms))
	switch {
	case l.stopSent && l.child == nil: // a stopper whose action is under way: it ends soon
	case l.stopSent:
		if err := l.child.Signal(s); err != nil {
			l.log.Warn("cannot forward signal", zap.String("signal", spec.SignalName(s)), zap.Error(err))
		}
	case l.terms > 1:
		l.triggerStop(terminationSignal, true)
	default:
		l.termAt = time.Now()
		if l.stopReason != noStop { // already counting down stopDelay: keep it inside the grace period
			l.armDelay()
			return
		}
		if len(l.stopDeps) == 0 {
			l.triggerStop(terminationSignal, false)
			if !l.stopSent && l.lw != nil {
				l.relist(ctx)
			}
			return
		}
		if l.checkStop(); l.stopReason == noStop {
			l.holdTimer = time.NewTimer(time.Until(l.holdDeadline()))
			l.log.Info("holding the stop until the stop dependencies exit",
				zap.Strings("running", l.runningStopDeps()), zap.Time("latest", l.holdDeadline()))
		}
	}
}

// relist lists the pod once, for a stopDelay that started with a termination signal while the
// watch is closed: whether the pod is being deleted, and the deletion's deadline, are only in
// the pod as it is now. The list gives up at the hold deadline already known.
func (l *loop) relist(ctx context.Context) {
	lw, name, until := l.lw, l.cfg.PodName, l.holdDeadline()
	found := make(chan *corev1.Pod, 1)
	l.relisted = found
	go func() {
		ctx, cancel := context.WithDeadline(ctx, until)
		defer cancel()
		var pod *corev1.Pod
		defer func() { found <- pod }()
		obj, err := cache.ToListerWatcherWithContext(lw).ListWithContext(ctx, metav1.ListOptions{})
		if err != nil {
			l.log.Debug("cannot list the pod for its deletion deadline", zap.Error(err))
			return
		}
		if list, ok := obj.(*corev1.PodList); ok {
			for i := range list.Items {
				if list.Items[i].Name == name {
					pod = &list.Items[i]
				}
			}
		}
	}()
}

// holdDeadline is the latest moment the stop signal may go out after a termination signal: the
// moment the kubelet may send SIGKILL (watch.KillDeadline: the grace period that applies to
// this container, never past the deletion's deadline) minus a reserve for the child's own
// shutdown, so the kubelet's SIGKILL does not arrive first.
func (l *loop) holdDeadline() time.Time {
	kill, grace := watch.KillDeadline(l.pod, l.self, l.termAt)
	return kill.Add(-reserveFor(grace))
}

// reserveFor is the part of a grace period kept for the child to stop: 2 s, or half of a short one.
func reserveFor(grace time.Duration) time.Duration {
	if grace < 4*time.Second {
		return grace / 2
	}
	return 2 * time.Second
}

func (l *loop) runningStopDeps() []string {
	if l.pod == nil {
		return l.stopDeps
	}
	return l.stopState().Running
}

// stopState judges the stop dependencies on the latest pod state and state files.
func (l *loop) stopState() watch.StopVerdict {
	local := map[string]watch.LocalExit{}
	for name, s := range l.files {
		if s.Exited {
			local[name] = watch.LocalExit{Code: int32(s.ExitCode), At: s.ExitedAt, Terminating: s.Terminating}
		}
	}
	return watch.StopStateWith(l.pod, l.stopDeps, local, l.terms > 0)
}

// checkStop evaluates the stop condition on the latest pod state and state files.
func (l *loop) checkStop() {
	if l.stopSent || len(l.stopDeps) == 0 || l.pod == nil {
		return
	}
	if l.stopReason != noStop {
		l.armDelay() // the deletion grace period may have become known, or shorter
		return
	}
	v := l.stopState()
	if !v.Holds() {
		if l.holdTimer != nil {
			l.holdTimer.Reset(time.Until(l.holdDeadline()))
		}
		return
	}
	l.log.Info("stop dependencies exited", zap.Strings("exited", v.Exited), zap.Strings("fromStateFiles", v.Local))
	l.triggerStop(stopDepsExited, false)
}

// triggerStop starts the stop sequence: wait stopDelay (unless cut short), then the stop
// signal, then SIGKILL after stopTimeout.
func (l *loop) triggerStop(reason stopReason, now bool) {
	if l.stopSent {
		return
	}
	if l.holdTimer != nil {
		l.holdTimer.Stop()
		l.holdTimer = nil
	}
	if l.stopReason == noStop {
		l.stopReason = reason
		l.stopAt = time.Now()
		l.log.Info("stop condition", zap.Stringer("reason", reason), zap.Duration("stopDelay", l.cfg.Spec.StopDelay))
	}
	if now {
		l.sendStop()
		return
	}
	l.armDelay()
}

// armDelay (re)arms the stopDelay timer: stopDelay after the stop condition, but after a
// termination signal never past the hold deadline.
func (l *loop) armDelay() {
	if l.stopSent {
		return
	}
	until := l.stopAt.Add(l.cfg.Spec.StopDelay)
	if !l.termAt.IsZero() {
		until = minTime(until, l.holdDeadline())
	}
	d := time.Until(until)
	if d <= 0 {
		l.sendStop()
		return
	}
	if l.delayTimer == nil {
		l.delayTimer = time.NewTimer(d)
		return
	}
	l.delayTimer.Reset(d)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (l *loop) sendStop() {
	if l.stopSent {
		return
	}
	l.stopSent = true
	if l.delayTimer != nil {
		l.delayTimer.Stop()
		l.delayTimer = nil
	}
	if a := l.cfg.Spec.StopAction; a != nil {
		done := make(chan error, 1)
		l.actionDone = done
		go func() { done <- stopaction.Do(context.Background(), *a) }()
		l.log.Info("stop action", zap.Stringer("request", a))
		return
	}
	l.signalStop(l.cfg.Spec.StopSignal)
}

// signalStop sends sig to the child (0: nothing, the stop action asked it already) and SIGKILLs
// its group stopTimeout later if it is still there.
func (l *loop) signalStop(sig syscall.Signal) {
	timeout := l.cfg.Spec.StopTimeout
	// The signal first: the log line would only delay it.
	l.child.StopAsync(sig, timeout)
	if sig != 0 {
		l.log.Info("stopping the child", zap.String("signal", spec.SignalName(sig)), zap.Duration("stopTimeout", timeout))
	}
}

// afterAction takes the stop action's result. A wrapper whose request could not be made, or
// was not answered with 2xx, falls back to the stop signal at once; either way the child gets
// stopTimeout before SIGKILL. A stopper is done (exit 0, whatever the result: its exit must not
// fail a Job whose mains succeeded).
func (l *loop) afterAction(err error) (int, bool) {
	l.logAction(err)
	switch {
	case l.stopper():
		reason := "stop action done"
		if err != nil {
			reason = "stop action failed"
		}
		return l.exit(0, reason), true
	case err != nil:
		l.signalStop(l.cfg.Spec.StopSignal)
	default:
		l.signalStop(0)
	}
	return 0, false
}

func (l *loop) logAction(err error) {
	if err != nil {
		l.log.Warn("stop action failed", zap.Stringer("request", l.cfg.Spec.StopAction), zap.Error(err))
		return
	}
	l.log.Info("stop action done", zap.Stringer("request", l.cfg.Spec.StopAction))
}

// actionLogWait bounds how long an exiting koordinator waits for the answer to a stop action
// whose target (the child) quit before the answer was read, only to log it.
const actionLogWait = 500 * time.Millisecond

// logActionAfterExit logs the stop action's result when the child exited while it was under
// way (a proxy that quits on the request may end before its answer is read).
func (l *loop) logActionAfterExit() {
	if l.actionDone == nil {
		return
	}
	select {
	case err := <-l.actionDone:
		l.logAction(err)
	case <-time.After(actionLogWait):
		l.log.Info("stop action unanswered as the child exited", zap.Stringer("request", l.cfg.Spec.StopAction))
	}
	l.actionDone = nil
}

// stopper reports whether this koordinator runs no child: it only waits for its stop
// dependencies and makes the stop action.
func (l *loop) stopper() bool { return len(l.cfg.Command) == 0 }

// childDone is the child's Done, or nil (never ready) for a stopper and while an exited child
// waits to be started again.
func (l *loop) childDone() <-chan struct{} {
	if l.child == nil || l.restartTimer != nil {
		return nil
	}
	return l.child.Done()
}

// finish runs once the child has exited: publish the exit (a sidecar may be waiting on it, so
// before anything slow), drain the child's process group, and exit.
func (l *loop) finish() int {
	exit := l.child.Exit()
	code, reason := l.outcome(exit)
	// Logged before it is published, so logs across containers never show a dependent reacting
	// before the exit it reacts to.
	l.log.Info("child exited", zap.Int("code", exit.ExitCode()), zap.Bool("killed", exit.KilledByStop))
	l.publishExited(code)
	l.logActionAfterExit()
	l.child.Drain(drainGrace)
	return l.exit(code, reason)
}

// outcome is koordinator's exit code, and why, once the child has exited.
func (l *loop) outcome(exit supervise.Exit) (int, string) {
	switch stoppedForDeps := l.stopSent && l.stopReason == stopDepsExited; {
	case stoppedForDeps && exit.KilledByStop:
		return l.cfg.Spec.KilledByStopDepExitCode, "child killed after stopTimeout, stopped because of stop dependencies"
	case stoppedForDeps:
		return l.cfg.Spec.TerminatedByStopDepExitCode, "child stopped because of stop dependencies"
	}
	return exit.ExitCode(), "child exited"
}

// exit logs koordinator's exit: a failure as one error line that says what is wrong.
func (l *loop) exit(code int, reason string, fields ...zap.Field) int {
	if code == ExitConfig {
		l.log.Error(reason, append(fields, zap.Int("code", code))...)
		return code
	}
	l.log.Info("koordinator exits", append([]zap.Field{zap.Int("code", code), zap.String("reason", reason)}, fields...)...)
	return code
}

// apiWarnEvery bounds how often API trouble is logged; the informer retries on its own.
const apiWarnEvery = 30 * time.Second

// apiTrouble logs a list/watch failure, at most every apiWarnEvery. A 403 becomes one line that
// says which Role rule is missing and for whom.
func (l *loop) apiTrouble(err error) {
	if !l.lastAPIWarning.IsZero() && time.Since(l.lastAPIWarning) < apiWarnEvery {
		return
	}
	l.lastAPIWarning = time.Now()
	if apierrors.IsForbidden(err) {
		l.log.Error(forbiddenHint(l.cfg.Namespace, err), zap.Error(err))
		return
	}
	l.log.Warn("Kubernetes API unavailable; retrying", zap.Error(err))
}

// forbiddenHint names the missing RBAC rule and the ServiceAccount it was checked for.
func forbiddenHint(namespace string, err error) string {
	who := "this pod's ServiceAccount"
	// Compiled here, not at package init: a 403 is rare, start-up is every time.
	userInMessage := regexp.MustCompile(`User "system:serviceaccount:([^:"]+):([^"]+)"`)
	if m := userInMessage.FindStringSubmatch(err.Error()); m != nil {
		who = fmt.Sprintf("ServiceAccount %s/%s", m[1], m[2])
	}
	return fmt.Sprintf("API access forbidden: grant %s a Role with rule {apiGroups: [\"\"], resources: [pods], verbs: [list, watch]} in namespace %s and a RoleBinding (see deploy/rbac.yaml)", who, namespace)
}

func isTermination(s syscall.Signal) bool { return s == syscall.SIGTERM || s == syscall.SIGINT }

// timerC is a nil channel (never ready) for a timer that is not set.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}
