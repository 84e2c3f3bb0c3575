package node

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/koordinator-dev/koordinator/internal/watch"
)

// ctrKind is what the kubelet makes of a container.
type ctrKind int

const (
	kindRegular ctrKind = iota // spec.containers
	kindInit                   // plain init container: runs to completion, in order
	kindSidecar                // init container with restartPolicy Always
)

// sidecarMinGrace is what the kubelet gives each sidecar between SIGTERM and
// SIGKILL on shutdown even when the pod's grace period has run out.
const sidecarMinGrace = 2 * time.Second

// ctrState is everything the node knows about one container of a pod. Only
// the pod's worker goroutine touches it.
type ctrState struct {
	spec  corev1.Container
	kind  ctrKind
	index int // in its spec list

	restartCount int32
	cur          *instance                        // latest instance, running or exited
	curExited    bool                             // cur's exit event has been handled
	lastTerm     *corev1.ContainerStateTerminated // the instance before cur
	waiting      *corev1.ContainerStateWaiting    // set when it cannot start (image, config)
	image        *imageRoot                       // mapped image, once known
	started      bool                             // cur running and its startup probe passed
	ready        bool                             // cur started and its readiness probe passes
	everStarted  bool                             // some instance was started (sidecar gate)
	finished     bool                             // exited for good
	exitReported bool                             // cur's exit has been written to the API once
	restartAt    time.Time                        // back-off: not before
	stopProbes   context.CancelFunc               // of cur
	termSent     bool                             // termination: SIGTERM sent to cur
	killSent     bool                             // termination: SIGKILL sent to cur
	killAt       time.Time                        // termination: SIGKILL cur at
	lastExitTerm *corev1.ContainerStateTerminated // cur's termination, once exited
}

// running reports whether cur runs as far as the worker knows: an exit counts
// once its event was handled, so every decision and status sees one state.
func (c *ctrState) running() bool { return c.cur != nil && !c.curExited }

// succeeded reports a plain init container that completed.
func (c *ctrState) succeeded() bool {
	return c.cur != nil && c.curExited && c.cur.exitCode == 0 && c.cur.startError == ""
}

// event is something that happened to a pod's containers, for its worker.
type event struct {
	exit  *instance
	probe *probeResult
}

// podWorker owns one pod: it starts and stops its containers and writes its
// status. One goroutine (run) does everything, so status writes are
// serialised and decisions see one consistent state.
type podWorker struct {
	n    *Node
	uid  types.UID
	ns   string
	name string
	dir  string

	mu      sync.Mutex
	latest  *corev1.Pod
	deleted bool
	notify  chan struct{}
	events  chan event
	quit    chan struct{}

	pod        *corev1.Pod
	gone       bool
	ctrs       []*ctrState // init containers in spec order, then regular ones
	byName     map[string]*ctrState
	volumesOK  bool
	volumeErr  string
	startTime  metav1.Time
	conditions map[corev1.PodConditionType]corev1.PodCondition

	initialized, initFailed bool

	// Termination (deletion, or the pod's work is done).
	terminating  bool
	deadline     time.Time         // SIGKILL regular containers at
	frozen       *corev1.PodStatus // the status written once when termination began
	final        bool              // every container stopped, final status due/written
	finalPhase   corev1.PodPhase
	terminalDue  time.Time     // when a terminal phase, once due, may be written (phase)
	pendingExits []pendingExit // exits the next relist will notice
	deleteSent   bool

	lastWritten *corev1.PodStatus
	retryAt     time.Time // a failed write or preparation is retried then
}

func newPodWorker(n *Node, pod *corev1.Pod) *podWorker {
	w := &podWorker{
		n: n, uid: pod.UID, ns: pod.Namespace, name: pod.Name,
		dir:        filepath.Join(n.opts.WorkDir, "pods", pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)),
		notify:     make(chan struct{}, 1),
		events:     make(chan event, 64),
		quit:       make(chan struct{}),
		byName:     map[string]*ctrState{},
		conditions: map[corev1.PodConditionType]corev1.PodCondition{},
		pod:        pod,
		startTime:  metav1.Now(),
	}
	for i, c := range pod.Spec.InitContainers {
		k := kindInit
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			k = kindSidecar
		}
		w.add(&ctrState{spec: c, kind: k, index: i})
	}
	for i, c := range pod.Spec.Containers {
		w.add(&ctrState{spec: c, kind: kindRegular, index: i})
	}
	return w
}

func (w *podWorker) add(c *ctrState) {
	w.ctrs = append(w.ctrs, c)
	w.byName[c.spec.Name] = c
}

// update hands the worker the pod's latest state (coalesced).
func (w *podWorker) update(pod *corev1.Pod, deleted bool) {
	w.mu.Lock()
	w.latest = pod
	w.deleted = w.deleted || deleted
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// send delivers an event unless the worker has returned.
func (w *podWorker) send(ev event) {
	select {
	case w.events <- ev:
	case <-w.quit:
	}
}

func (w *podWorker) logf(format string, args ...any) {
	w.n.opts.Logf("node: pod %s/%s: "+format, append([]any{w.ns, w.name}, args...)...)
}

func (w *podWorker) run() {
	defer close(w.quit)
	defer w.killAll(sidecarMinGrace)
	w.logf("bound to %s", w.n.opts.Name)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if w.sync() {
			return
		}
		w.flush()
		wake := w.nextWake()
		timer.Reset(wake)
		select {
		case <-w.notify:
			w.mu.Lock()
			pod, deleted := w.latest, w.deleted
			w.mu.Unlock()
			if pod != nil && pod.UID == w.uid {
				w.pod = pod
			}
			w.gone = deleted
		case ev := <-w.events:
			w.handle(ev)
		case <-timer.C:
		case <-w.n.ctx.Done():
			return
		}
	}
}

// nextWake is how long the worker may sleep before a timer-driven decision
// (back-off, grace period, retries) is due.
func (w *podWorker) nextWake() time.Duration {
	next := time.Now().Add(time.Hour)
	consider := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	consider(w.retryAt)
	for _, c := range w.ctrs {
		if c.cur != nil && c.curExited && !c.finished && !w.terminating {
			consider(c.restartAt)
		}
		if w.terminating && c.running() {
			consider(c.killAt)
		}
	}
	if w.terminating {
		consider(w.deadline)
	}
	if time.Now().Before(w.terminalDue) {
		consider(w.terminalDue)
	}
	for _, p := range w.pendingExits {
		consider(p.due)
	}
	d := time.Until(next)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// relistPeriod is how often the kubelet's generic PLEG lists containers: an
// exit outside a pod's termination reaches the pod worker, and then the API,
// only at the next relist (0.4–1.0 s after it happened on a real kubelet
// v1.37.2, docs/real-node.md). During a termination the kubelet's own stop
// calls see each exit at once.
const relistPeriod = time.Second

// nextRelist is the first relist after t: relists tick every relistPeriod
// from the node's start, for all its pods.
func (n *Node) nextRelist(t time.Time) time.Time {
	return n.started.Add((t.Sub(n.started)/relistPeriod + 1) * relistPeriod)
}

// pendingExit is an exit the next relist will notice.
type pendingExit struct {
	inst *instance
	due  time.Time
}

// applyDueExits applies every pending exit due by now.
func (w *podWorker) applyDueExits(now time.Time) {
	kept := w.pendingExits[:0]
	for _, p := range w.pendingExits {
		if now.Before(p.due) {
			kept = append(kept, p)
			continue
		}
		w.applyExit(p.inst)
	}
	w.pendingExits = kept
}

// handle applies an event to the state.
func (w *podWorker) handle(ev event) {
	switch {
	case ev.exit != nil && !w.terminating:
		w.pendingExits = append(w.pendingExits, pendingExit{inst: ev.exit, due: w.n.nextRelist(time.Now())})
	case ev.exit != nil:
		w.applyExit(ev.exit)
	case ev.probe != nil:
		w.handleProbe(ev.probe)
	}
}

// applyExit records an instance's exit, as a relist (or a stop call) finds it.
func (w *podWorker) applyExit(inst *instance) {
	c := w.byName[inst.container]
	if c == nil || c.cur != inst {
		return
	}
	if c.stopProbes != nil {
		c.stopProbes()
	}
	c.curExited = true
	c.started, c.ready, c.exitReported = false, false, false
	c.lastExitTerm = terminatedState(inst)
	w.logf("container %s exited with %d%s", c.spec.Name, inst.exitCode, startErrorNote(inst))
	if w.terminating {
		c.finished = true
		return
	}
	// A StartError has exit code 128: restarted as any failure would be.
	c.finished = c.kind != kindSidecar && !watch.WillRestart(w.pod, c.spec.Name, inst.exitCode)
	if !c.finished {
		c.restartAt = time.Now().Add(w.backoff(c))
	}
}

func startErrorNote(inst *instance) string {
	if inst.startError != "" {
		return " (StartError: " + inst.startError + ")"
	}
	return ""
}

// backoff is the crash-loop delay before the next start of c: the first
// restart is immediate, then CrashLoopBase doubling up to 30× (kubelet: 10 s
// to 300 s).
func (w *podWorker) backoff(c *ctrState) time.Duration {
	if c.restartCount == 0 {
		return 0
	}
	base := w.n.opts.CrashLoopBase
	d := base
	for i := int32(1); i < c.restartCount && d < 30*base; i++ {
		d *= 2
	}
	return min(d, 30*base)
}

// sync makes the containers match the pod's desired state; it reports true
// when the worker is finished (the pod is gone).
func (w *podWorker) sync() (done bool) {
	if w.gone {
		// The object is gone from the API (deleted by us after the final
		// status, or force-deleted): nothing may keep running.
		return true
	}
	w.applyDueExits(time.Now())
	if !w.volumesOK && !w.terminating && time.Now().After(w.retryAt) {
		if err := w.prepareVolumes(); err != nil {
			w.volumeErr = err.Error()
			w.retryAt = time.Now().Add(time.Second)
			w.logf("volumes: %v (retrying)", err)
		} else {
			w.volumesOK, w.volumeErr = true, ""
		}
	}
	pod := w.pod
	if pod.DeletionTimestamp != nil {
		grace := int64(30)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = *pod.Spec.TerminationGracePeriodSeconds
		}
		grace = max(grace, 1)
		deadline := time.Now().Add(time.Duration(grace) * time.Second)
		switch {
		case !w.terminating:
			w.beginTermination(deadline, "deletion")
		case deadline.Before(w.deadline):
			w.deadline = deadline // a shorter grace period wins
		}
	}
	if !w.terminating {
		if w.volumesOK {
			w.syncContainers()
		}
		if w.workDone() {
			grace := int64(30)
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				grace = *pod.Spec.TerminationGracePeriodSeconds
			}
			w.beginTermination(time.Now().Add(time.Duration(max(grace, 1))*time.Second), "work done")
		}
	}
	if w.terminating {
		return w.syncTermination()
	}
	return false
}

// syncContainers starts what should run: init containers in order (a plain
// one must complete, a sidecar must have started, before the next), then all
// regular containers; restarts exited ones after their back-off.
func (w *podWorker) syncContainers() {
	now := time.Now()
	w.initialized, w.initFailed = true, false
	for _, c := range w.ctrs {
		if c.kind == kindRegular {
			continue
		}
		if c.kind == kindInit {
			if c.succeeded() {
				continue
			}
			w.initialized = false
			switch {
			case c.running():
			case c.cur == nil:
				w.startContainer(c)
			case c.finished:
				w.initFailed = true
			default:
				w.maybeRestart(c, now)
			}
			break
		}
		// Sidecar.
		switch {
		case c.cur == nil:
			w.startContainer(c)
		case !c.running():
			w.maybeRestart(c, now)
		}
		if !c.everStarted {
			w.initialized = false
			break
		}
	}
	if !w.initialized {
		return
	}
	for _, c := range w.ctrs {
		if c.kind != kindRegular {
			continue
		}
		switch {
		case c.cur == nil:
			w.startContainer(c)
		case !c.running() && !c.finished:
			w.maybeRestart(c, now)
		}
	}
}

func (w *podWorker) maybeRestart(c *ctrState, now time.Time) {
	if c.finished || !c.exitReported || now.Before(c.restartAt) {
		return
	}
	w.startContainer(c)
}

// workDone reports whether the pod's work is over without a deletion: a plain
// init container failed for good, or every regular container exited for
// good. The kubelet then stops what still runs (the sidecars) and makes the
// phase terminal.
func (w *podWorker) workDone() bool {
	if w.initFailed {
		return true
	}
	if !w.initialized {
		return false
	}
	for _, c := range w.ctrs {
		if c.kind == kindRegular && !c.finished {
			return false
		}
	}
	return true
}

// beginTermination writes the status once, then (in syncTermination) stops
// every container: regular and plain init containers at once with SIGTERM,
// SIGKILL at deadline; then sidecars in reverse order. No container state is
// written until all have stopped, as the kubelet's killPod blocks.
func (w *podWorker) beginTermination(deadline time.Time, why string) {
	w.applyDueExits(time.Now().Add(relistPeriod)) // the stop calls see every exit
	w.logf("terminating (%s), grace until %s", why, deadline.Format(time.RFC3339))
	w.flush()
	st := w.buildStatus()
	w.frozen = &st
	w.terminating = true
	w.deadline = deadline
	for _, c := range w.ctrs {
		if !c.running() {
			c.finished = true
		}
	}
}

// syncTermination drives the stop sequence; it reports true when the pod is
// finished and deleted.
func (w *podWorker) syncTermination() bool {
	now := time.Now()
	pending := false
	for _, c := range w.ctrs {
		if c.kind == kindSidecar || !c.running() {
			continue
		}
		pending = true
		if !c.termSent {
			c.termSent = true
			c.killAt = w.deadline
			c.cur.signal(syscall.SIGTERM)
		}
		if !now.Before(c.killAt) && !c.killSent {
			c.killSent = true
			w.logf("container %s: grace period over, SIGKILL", c.spec.Name)
			c.cur.signal(syscall.SIGKILL)
		}
	}
	if pending {
		return false
	}
	for i := len(w.ctrs) - 1; i >= 0; i-- {
		c := w.ctrs[i]
		if c.kind != kindSidecar || !c.running() {
			continue
		}
		if !c.termSent {
			c.termSent = true
			c.killAt = now.Add(sidecarMinGrace)
			if w.deadline.After(c.killAt) {
				c.killAt = w.deadline
			}
			c.cur.signal(syscall.SIGTERM)
		}
		if !now.Before(c.killAt) && !c.killSent {
			c.killSent = true
			w.logf("sidecar %s: grace period over, SIGKILL", c.spec.Name)
			c.cur.signal(syscall.SIGKILL)
		}
		return false // one sidecar at a time, in reverse order
	}
	if !w.final {
		w.final = true
		w.frozen = nil
		w.finalPhase = w.terminalPhase()
		w.logf("all containers stopped, phase %s", w.finalPhase)
	}
	if w.pod.DeletionTimestamp == nil {
		return false // wait for a deletion; nothing runs any more
	}
	w.flush()
	if w.lastWritten == nil || w.lastWritten.Phase != w.finalPhase {
		if time.Now().Before(w.retryAt) {
			return false
		}
	}
	if !w.deleteSent {
		// As the kubelet does once everything has stopped: grace 0, only
		// this incarnation of the pod.
		ctx, cancel := context.WithTimeout(w.n.ctx, 30*time.Second)
		defer cancel()
		zero := int64(0)
		err := w.n.client.CoreV1().Pods(w.ns).Delete(ctx, w.name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &w.uid},
		})
		switch {
		case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
			w.deleteSent = true
			w.logf("deleted")
		default:
			w.logf("delete: %v (retrying)", err)
			w.retryAt = time.Now().Add(500 * time.Millisecond)
			return false
		}
	}
	return false // returns once the informer reports the deletion (gone)
}

// terminalPhase is the phase once nothing runs: Succeeded if every regular
// container's last run exited 0 (sidecars' codes do not count), else Failed.
func (w *podWorker) terminalPhase() corev1.PodPhase {
	if w.initFailed {
		return corev1.PodFailed
	}
	for _, c := range w.ctrs {
		if c.kind != kindRegular {
			continue
		}
		if c.cur == nil || c.cur.exitCode != 0 || c.cur.startError != "" {
			return corev1.PodFailed
		}
	}
	return corev1.PodSucceeded
}

// killAll stops every running instance of the pod: SIGTERM, SIGKILL after
// grace, and waits (used when the node stops or the pod vanished).
func (w *podWorker) killAll(grace time.Duration) {
	var running []*instance
	for _, c := range w.ctrs {
		if c.cur != nil && !c.cur.exited() {
			running = append(running, c.cur)
			c.cur.signal(syscall.SIGTERM)
		}
		if c.stopProbes != nil {
			c.stopProbes()
		}
	}
	deadline := time.After(grace)
	for _, inst := range running {
		select {
		case <-inst.done:
		case <-deadline:
			inst.signal(syscall.SIGKILL)
			<-inst.done
		}
	}
	for _, inst := range running {
		inst.signal(syscall.SIGKILL)
		<-inst.done
	}
}

// startContainer starts a new instance of c (its first, or a restart).
func (w *podWorker) startContainer(c *ctrState) {
	pullFailed := func(err error) {
		reason := "ErrImagePull"
		if c.waiting != nil && (c.waiting.Reason == "ErrImagePull" || c.waiting.Reason == "ImagePullBackOff") {
			reason = "ImagePullBackOff"
		}
		if c.waiting == nil || c.waiting.Reason != reason {
			w.logf("container %s: %v", c.spec.Name, err)
		}
		c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		w.retryAt = time.Now().Add(time.Second)
	}
	if c.image == nil {
		img, err := w.n.mapImage(c.spec.Image)
		if err != nil {
			pullFailed(err)
			return
		}
		c.image = img
	}
	// As the kubelet, the images of the image volumes this container mounts
	// are "pulled" before it starts; a failure is the container's.
	for _, m := range c.spec.VolumeMounts {
		for _, v := range w.pod.Spec.Volumes {
			if v.Name == m.Name && v.Image != nil {
				if _, err := w.n.imageVolumeDir(v.Image.Reference); err != nil {
					pullFailed(err)
					return
				}
			}
		}
	}
	spec, env, err := w.initSpec(c)
	if err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
		w.retryAt = time.Now().Add(time.Second)
		w.logf("container %s: %v", c.spec.Name, err)
		return
	}
	c.waiting = nil
	restart := c.restartCount
	if c.cur != nil {
		restart++
	}
	inst := &instance{
		id:        newID(),
		container: c.spec.Name,
		restart:   restart,
		env:       env,
	}
	logDir := filepath.Join(w.dir, "logs", c.spec.Name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		return
	}
	inst.logPath = filepath.Join(logDir, strconv.Itoa(int(restart))+".log")
	if tp := c.spec.TerminationMessagePath; tp != "" {
		// As the kubelet: <pod dir>/containers/<name>/<id>, bound at the
		// container's terminationMessagePath (koordinator may read its own
		// name from this mount's line in /proc/self/mountinfo).
		f := filepath.Join(w.dir, "containers", c.spec.Name, inst.id[:8])
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err == nil {
			if err := os.WriteFile(f, nil, 0o666); err == nil {
				spec.Binds = append(spec.Binds, bindMount{Source: f, Target: tp})
			}
		}
	}
	runDir := filepath.Join(w.dir, "run", c.spec.Name+"-"+strconv.Itoa(int(restart)))
	err = w.n.startInstance(runDir, spec, inst, func(i *instance) { w.send(event{exit: i}) })
	if err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		w.retryAt = time.Now().Add(time.Second)
		w.logf("container %s: %v", c.spec.Name, err)
		return
	}
	w.n.addLog(w.ns, w.name, c.spec.Name, inst.logPath)
	if c.cur != nil {
		c.lastTerm = c.lastExitTerm
		c.restartCount = restart
	}
	c.cur = inst
	c.curExited = false
	c.lastExitTerm = nil
	c.exitReported = false
	c.termSent, c.killSent = false, false
	c.started = c.spec.StartupProbe == nil || c.kind == kindInit
	c.ready = c.started && c.spec.ReadinessProbe == nil && c.kind != kindInit
	if c.started {
		c.everStarted = true
	}
	w.logf("container %s started (pid %d, restart %d)", c.spec.Name, inst.pid, restart)
	w.startProbes(c, inst)
}

// terminatedState describes an exited instance as the kubelet does.
func terminatedState(inst *instance) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    inst.exitCode,
		Reason:      "Completed",
		StartedAt:   metav1.NewTime(inst.startedAt),
		FinishedAt:  metav1.NewTime(inst.finishedAt),
		ContainerID: "local://" + inst.id,
	}
	switch {
	case inst.startError != "":
		t.Reason, t.Message = "StartError", inst.startError
	case inst.exitCode != 0:
		t.Reason = "Error"
	}
	return t
}

// sortedRegular returns the regular containers sorted by name, as the kubelet
// writes containerStatuses.
func (w *podWorker) sortedRegular() []*ctrState {
	var out []*ctrState
	for _, c := range w.ctrs {
		if c.kind == kindRegular {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}
