package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ctrStatus is one container's status as the kubelet writes it
// (kubelet_pods.go convertToAPIContainerStatuses).
func (w *podWorker) ctrStatus(c *ctrState) corev1.ContainerStatus {
	started := false
	cs := corev1.ContainerStatus{
		Name:         c.spec.Name,
		Image:        c.spec.Image,
		RestartCount: c.restartCount,
		Started:      &started,
	}
	if c.image != nil {
		cs.ImageID = c.image.id
	}
	switch {
	case c.cur == nil:
		if c.waiting != nil {
			cs.State.Waiting = c.waiting.DeepCopy()
			break
		}
		reason := "ContainerCreating"
		if len(w.pod.Spec.InitContainers) > 0 {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
	case c.running():
		cs.ContainerID = "local://" + c.cur.id
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.cur.startedAt)}
		started = c.started
		cs.Ready = c.ready
		if c.lastTerm != nil {
			cs.LastTerminationState.Terminated = c.lastTerm.DeepCopy()
		}
	default:
		cs.ContainerID = "local://" + c.cur.id
		backingOff := !c.finished && !w.terminating && c.exitReported && time.Now().Before(c.restartAt)
		if backingOff {
			// The kubelet shows a container it will restart as waiting, with
			// the exit in lastState.
			cs.State.Waiting = &corev1.ContainerStateWaiting{
				Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
					w.backoff(c), c.spec.Name, w.name, w.ns, w.uid),
			}
			cs.LastTerminationState.Terminated = c.lastExitTerm.DeepCopy()
		} else {
			cs.State.Terminated = c.lastExitTerm.DeepCopy()
			if c.lastTerm != nil {
				cs.LastTerminationState.Terminated = c.lastTerm.DeepCopy()
			}
		}
		// A plain init container is ready once it completed.
		cs.Ready = c.kind == kindInit && c.succeeded()
	}
	return cs
}

// terminalPhaseDelay is how long after the status write that shows the last
// container terminated the kubelet writes the terminal phase, in a write of
// its own: 1.0–1.5 s on a real kubelet v1.37.2 (docs/real-node.md). A
// deletion's final write carries both at once.
const terminalPhaseDelay = time.Second

// phase is rawPhase, with a terminal phase held back for terminalPhaseDelay
// from the moment it is first due unless the pod is being deleted, as the
// real kubelet writes it.
func (w *podWorker) phase() corev1.PodPhase {
	p := w.rawPhase()
	if p != corev1.PodSucceeded && p != corev1.PodFailed || w.pod.DeletionTimestamp != nil {
		return p
	}
	if w.terminalDue.IsZero() {
		w.terminalDue = time.Now().Add(terminalPhaseDelay)
	}
	if time.Now().Before(w.terminalDue) {
		if w.initialized {
			return corev1.PodRunning
		}
		return corev1.PodPending
	}
	return p
}

// rawPhase follows the kubelet's getPhase: sidecars do not count, and a
// terminal phase is reported only once nothing runs.
func (w *podWorker) rawPhase() corev1.PodPhase {
	if w.final {
		return w.finalPhase
	}
	anyRunning := false
	for _, c := range w.ctrs {
		if c.running() {
			anyRunning = true
		}
	}
	if !w.initialized {
		if w.initFailed && !anyRunning {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	running, waiting, finished := 0, 0, true
	for _, c := range w.ctrs {
		if c.kind != kindRegular {
			continue
		}
		switch {
		case c.running():
			running++
		case c.cur == nil:
			waiting++
		}
		if !c.finished {
			finished = false
		}
	}
	switch {
	case running > 0:
		return corev1.PodRunning
	case waiting > 0:
		return corev1.PodPending
	case !finished || anyRunning:
		return corev1.PodRunning
	}
	return w.terminalPhase()
}

// buildStatus is the pod's status now.
func (w *podWorker) buildStatus() corev1.PodStatus {
	st := *w.pod.Status.DeepCopy()
	st.Phase = w.phase()
	st.HostIP = nodeIP
	st.HostIPs = []corev1.HostIP{{IP: nodeIP}}
	st.PodIP = nodeIP
	st.PodIPs = []corev1.PodIP{{IP: nodeIP}}
	st.StartTime = &w.startTime
	st.InitContainerStatuses = nil
	st.ContainerStatuses = nil
	for _, c := range w.ctrs {
		if c.kind != kindRegular {
			st.InitContainerStatuses = append(st.InitContainerStatuses, w.ctrStatus(c))
		}
	}
	for _, c := range w.sortedRegular() {
		st.ContainerStatuses = append(st.ContainerStatuses, w.ctrStatus(c))
	}
	w.setConditions(&st)
	return st
}

// currentStatus is what to write now: during termination the status written
// when it began, with only probe-driven readiness changes (the kubelet's
// prober keeps updating ready while killPod blocks).
func (w *podWorker) currentStatus() corev1.PodStatus {
	if w.frozen == nil {
		return w.buildStatus()
	}
	st := *w.frozen.DeepCopy()
	overlay := func(list []corev1.ContainerStatus) {
		for i := range list {
			c := w.byName[list[i].Name]
			if c != nil && c.spec.ReadinessProbe != nil && list[i].State.Running != nil {
				list[i].Ready = c.ready && c.running()
			}
		}
	}
	overlay(st.InitContainerStatuses)
	overlay(st.ContainerStatuses)
	w.setConditions(&st)
	return st
}

// setConditions writes the conditions the kubelet owns, keeping others
// (PodScheduled from the scheduler) as they are.
func (w *podWorker) setConditions(st *corev1.PodStatus) {
	var notInit, notReady []string
	for _, cs := range st.InitContainerStatuses {
		c := w.byName[cs.Name]
		switch {
		case c == nil:
		case c.kind == kindInit && !cs.Ready:
			notInit = append(notInit, cs.Name)
		case c.kind == kindSidecar:
			if !c.everStarted {
				notInit = append(notInit, cs.Name)
			}
			if !cs.Ready {
				notReady = append(notReady, cs.Name)
			}
		}
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			notReady = append(notReady, cs.Name)
		}
	}
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	cond := func(t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: message}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		if prev, seen := w.conditions[t]; seen && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
		} else {
			c.LastTransitionTime = metav1.Now()
		}
		w.conditions[t] = c
		return c
	}
	readyReason, readyMsg := "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(notReady, " "))
	if terminal {
		readyReason, readyMsg = "PodCompleted", ""
	}
	initOK := len(notInit) == 0 && (w.initialized || terminal)
	if prev, ok := w.conditions[corev1.PodInitialized]; ok && prev.Status == corev1.ConditionTrue {
		initOK = true // once initialized, a pod stays initialized
	}
	initReason, initMsg := "ContainersNotInitialized", fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " "))
	if terminal && !initOK {
		initReason, initMsg = "PodCompleted", ""
	}
	ours := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.volumesOK && !terminal, "", ""),
		cond(corev1.PodInitialized, initOK, initReason, initMsg),
		cond(corev1.PodReady, len(notReady) == 0 && !terminal, readyReason, readyMsg),
		cond(corev1.ContainersReady, len(notReady) == 0 && !terminal, readyReason, readyMsg),
	}
	owned := map[corev1.PodConditionType]bool{}
	for _, c := range ours {
		owned[c.Type] = true
	}
	for _, c := range w.pod.Status.Conditions {
		if !owned[c.Type] {
			ours = append(ours, c)
		}
	}
	st.Conditions = ours
}

// flush writes the current status if it changed: a merge patch of the status
// subresource carrying the pod's UID, so it never lands on a new pod of the
// same name (as the kubelet's status manager does).
func (w *podWorker) flush() {
	st := w.currentStatus()
	if w.lastWritten != nil && apiequality.Semantic.DeepEqual(*w.lastWritten, st) {
		w.markExitsReported()
		return
	}
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": w.uid},
		"status":   st,
	})
	if err != nil {
		w.logf("status: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(w.n.ctx, 30*time.Second)
	defer cancel()
	_, err = w.n.client.CoreV1().Pods(w.ns).Patch(ctx, w.name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		w.logf("status write: %v (retrying)", err)
		w.retryAt = time.Now().Add(500 * time.Millisecond)
		return
	}
	w.lastWritten = &st
	w.markExitsReported()
}

// markExitsReported notes that the API now shows every exit seen so far (a
// container that will restart shows terminated for one write first).
func (w *podWorker) markExitsReported() {
	for _, c := range w.ctrs {
		if c.cur != nil && c.curExited {
			c.exitReported = true
		}
	}
}
