package watch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// LocalExit is a container's exit learned outside the API: from the state file its wrapper
// published in the pod's shared folder (internal/podlocal).
type LocalExit struct {
	Code int32     // the container's exit code (its wrapper's)
	At   time.Time // when it exited, by the node's clock
	// Terminating: its wrapper had received SIGTERM/SIGINT before the exit. The kubelet was
	// stopping the container — a pod deletion or eviction, but also a failed liveness or
	// startup probe or a changed image, after which the kubelet restarts it by the policy alone
	// whatever the code — so the code does not say whether it runs again.
	Terminating bool
}

// LocalExitFinal reports whether the named container, which its state file says exited as e,
// has exited for good. The pod (its spec, and its status for instance tracking) comes from the
// API; selfTerminating says this wrapper has itself received SIGTERM/SIGINT. Files never make
// anything Ready; this only ever adds exits.
//
//   - An unknown container, or a nil pod: no (the restart rules need the spec).
//   - The exit belongs to an older instance: no. The API knows an instance that started after
//     e.At (state.running, state.terminated or lastState.terminated startedAt later than the
//     exit), so a newer instance runs or ran: the file is stale. The container runtime stamps
//     startedAt before the wrapper in it can run, on the same clock, so a current instance's
//     exit is never taken for stale; startedAt has whole seconds in the API, so an instance that
//     started in the same second as the old one's exit is not told apart (that takes a restart
//     the rules below have already ruled out, such as a liveness kill).
//   - The pod is Terminating (deletion or a terminal phase): yes, nothing restarts.
//   - This wrapper has received SIGTERM/SIGINT: yes, whatever the code. The kubelet sends it on
//     pod deletion (to every regular container at once) and on eviction or node shutdown, and
//     writes no container state while it waits for the containers to stop, so the API may not
//     show the deletion and will not show the exit. A SIGTERM to this container alone (its own
//     failed probe) also passes here: it is being stopped anyway, and stopping its child once the
//     dependency's child is gone only ends a hold nobody needs.
//   - e.Terminating (the dependency was being stopped by the kubelet, this wrapper was not):
//     no; the API will tell.
//   - Otherwise the kubelet's own decision on the code: yes unless WillRestart (container
//     restartPolicy and rules, the pod's policy, RestartAllContainers, native sidecars).
func LocalExitFinal(pod *corev1.Pod, name string, e LocalExit, selfTerminating bool) bool {
	c, k, ok := container(pod, name)
	if !ok {
		return false
	}
	if st := status(pod, name, k); st != nil && startedAfter(st, e.At) {
		return false
	}
	switch {
	case Terminating(pod), selfTerminating:
		return true
	case e.Terminating:
		return false
	}
	return !willRestart(pod, c, k, e.Code, "")
}

// startedAfter reports whether the status shows an instance that started after t.
func startedAfter(st *corev1.ContainerStatus, t time.Time) bool {
	var starts []time.Time
	if r := st.State.Running; r != nil {
		starts = append(starts, r.StartedAt.Time)
	}
	if x := st.State.Terminated; x != nil {
		starts = append(starts, x.StartedAt.Time)
	}
	if x := st.LastTerminationState.Terminated; x != nil {
		starts = append(starts, x.StartedAt.Time)
	}
	for _, s := range starts {
		if s.After(t) {
			return true
		}
	}
	return false
}

// StopStateWith is StopState with exits learned from state files as a second source: a stop
// dependency counts as exited for good when the API says so or when its local exit is final
// (LocalExitFinal). Local lists the dependencies only the files showed exited.
func StopStateWith(pod *corev1.Pod, stopDeps []string, local map[string]LocalExit, selfTerminating bool) StopVerdict {
	var v StopVerdict
	for _, d := range stopDeps {
		if _, exited := ExitedForGood(pod, d); exited {
			v.Exited = append(v.Exited, d)
			continue
		}
		if e, ok := local[d]; ok && LocalExitFinal(pod, d, e, selfTerminating) {
			v.Exited = append(v.Exited, d)
			v.Local = append(v.Local, d)
			continue
		}
		v.Running = append(v.Running, d)
	}
	return v
}

// AssumedPod is the pod as a wrapper without the API knows it: the named containers, regular
// ones, under the pod restartPolicy its spec states, with no status. The rules judge the state
// files of those containers against it (LocalExitFinal), as they judge them against the real
// pod when the API is there.
func AssumedPod(policy corev1.RestartPolicy, names ...string) *corev1.Pod {
	p := &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: policy}}
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
	}
	return p
}
