// Package watch turns the state of this container's own pod into the verdicts koordinator acts
// on: which dependencies are Ready, which have exited for good, what the spec's dependencies
// mean against the pod spec. It is two parts: pure functions over *corev1.Pod (rules.go,
// validate.go: no logging, no callbacks, no client, the pod is never modified) and a thin
// informer that keeps the pod up to date (informer.go).
//
// The rules follow what the kubelet of Kubernetes v1.37 does, read from its source:
// pkg/api/v1/pod/util.go (ContainerShouldRestart, FindMatchingContainerRestartRule,
// AllContainersCouldRestart, IsRestartableInitContainer), pkg/kubelet/container/helpers.go
// (ShouldContainerBeRestarted), pkg/kubelet/kuberuntime/kuberuntime_container.go
// (computeInitContainerActions), pkg/kubelet/kubelet_pods.go (getPhase,
// convertToAPIContainerStatuses) and pkg/kubelet/prober/prober_manager.go (UpdatePodStatus).
package watch

import (
	corev1 "k8s.io/api/core/v1"
)

// kind is what the kubelet makes of a container: its restart logic differs for each.
type kind int

const (
	regular   kind = iota // spec.containers
	plainInit             // spec.initContainers, runs to completion once
	sidecar               // spec.initContainers with restartPolicy Always (native sidecar)
)

// reasonOOMKilled is the runtime's termination reason for an out-of-memory kill. The kubelet
// counts an init container killed that way as failed whatever its exit code
// (kuberuntime/helpers.go isInitContainerFailed).
const reasonOOMKilled = "OOMKilled"

// container finds the named container in the pod spec and what kind it is.
func container(pod *corev1.Pod, name string) (*corev1.Container, kind, bool) {
	if pod == nil || name == "" {
		return nil, 0, false
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.Name == name {
			if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				return c, sidecar, true
			}
			return c, plainInit, true
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name == name {
			return c, regular, true
		}
	}
	return nil, 0, false
}

// status finds the named container's status. Init containers (sidecars included) are reported
// in status.initContainerStatuses, regular ones in status.containerStatuses; the other list is
// searched too, since names are unique across both.
func status(pod *corev1.Pod, name string, k kind) *corev1.ContainerStatus {
	first, second := pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses
	if k != regular {
		first, second = second, first
	}
	for _, list := range [][]corev1.ContainerStatus{first, second} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// lastExit reports the exit the status shows: state.terminated, or state.waiting with
// lastState.terminated (the previous instance exited and no newer one runs). waiting is true in
// the second case.
func lastExit(st *corev1.ContainerStatus) (code int32, reason string, waiting, exited bool) {
	switch {
	case st.State.Terminated != nil:
		return st.State.Terminated.ExitCode, st.State.Terminated.Reason, false, true
	case st.State.Waiting != nil && st.LastTerminationState.Terminated != nil:
		t := st.LastTerminationState.Terminated
		return t.ExitCode, t.Reason, true, true
	}
	return 0, "", false, false
}

// Ready reports whether the named container (regular or init) is Ready: status ready:true and
// running. For a plain (non-restartable) init container, ready:true means it completed (exit 0);
// that counts as Ready in the sense of a start dependency.
//
// The kubelet sets a plain init container's ready exactly when its state is terminated with exit
// code 0 (prober_manager.go UpdatePodStatus), so either sign is accepted for it. An unknown name
// or a container without a status yet is not Ready. Deletion does not change readiness: the
// kubelet keeps probing while the pod terminates.
func Ready(pod *corev1.Pod, name string) bool {
	_, k, ok := container(pod, name)
	if !ok {
		return false
	}
	st := status(pod, name, k)
	if st == nil {
		return false
	}
	if k == plainInit {
		return st.Ready || (st.State.Terminated != nil && st.State.Terminated.ExitCode == 0)
	}
	return st.Ready && st.State.Running != nil
}

// Terminating reports whether nothing of this pod will restart any more: deletionTimestamp set or
// phase Succeeded/Failed.
//
// Once deletion has started the kubelet's pod worker only runs SyncTerminatingPod, which kills and
// never starts a container (ShouldContainerBeRestarted also answers no); a terminal phase is
// written only once nothing runs and never goes back.
func Terminating(pod *corev1.Pod) bool {
	if pod == nil {
		return false
	}
	return pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// ExitedForGood reports whether the named container has terminated and the kubelet will not run
// it again. code is its last exit code when exited is true.
//
// The exit is state.terminated, or state.waiting with lastState.terminated. Whether it is final:
//   - the pod is Terminating (deletion or terminal phase): final, whatever the policies say;
//     this includes native sidecars and pods with RestartAllContainers rules;
//   - state.terminated: final unless WillRestart says the kubelet restarts it;
//   - state.waiting with lastState.terminated: not final. The kubelet writes waiting over a
//     terminated instance only once it has decided to start a new one (kubelet_pods.go
//     convertToAPIContainerStatuses: ShouldContainerBeRestarted, or a newer instance already
//     created), or when the runtime lost the instance (a synthetic lastState
//     ContainerStatusUnknown/137, and the kubelet re-creates a container it has no status of).
//     A restart decision of "no" computed from lastState's exit code is therefore stale there:
//     a container killed by a failed liveness probe or a changed image is restarted by the
//     policy alone, even when it then exits 0 under OnFailure.
//
// An unknown name, a container without a status, or one that is running or waiting for its first
// start has not exited.
func ExitedForGood(pod *corev1.Pod, name string) (code int32, exited bool) {
	c, k, ok := container(pod, name)
	if !ok {
		return 0, false
	}
	st := status(pod, name, k)
	if st == nil {
		return 0, false
	}
	code, reason, waiting, ok := lastExit(st)
	switch {
	case !ok:
		return 0, false
	case Terminating(pod):
		return code, true
	case waiting:
		return 0, false
	case willRestart(pod, c, k, code, reason):
		return 0, false
	}
	return code, true
}

// WillRestart is the kubelet's restart decision for a container of this pod that exited with
// exitCode, ignoring deletion/phase (the caller and ExitedForGood handle those). Used also for
// exits learned outside the API (a state file in a shared folder).
//
// The decision, as the kubelet makes it:
//   - any container of the pod has a RestartAllContainers rule: yes. Such a rule restarts every
//     container of the pod in place, so no exit is final until the phase is terminal (the status
//     manager's checkContainerStateTransition lets every container leave terminated for such a
//     pod);
//   - a native sidecar: yes, always;
//   - a plain init container that completed (exit 0, not OOMKilled): no, it never runs again;
//     a failed one: as for a regular container;
//   - the container's own restartPolicy when set: its restartPolicyRules first, in order, the
//     first rule whose exitCodes match deciding (a match means restart); then the policy
//     (Always: yes; OnFailure: unless 0; Never: no);
//   - otherwise the pod's restartPolicy (Always or unset: yes; OnFailure: unless 0; Never: no).
//     Rules on a container without its own restartPolicy are ignored, as the kubelet ignores
//     them (the API rejects such a spec).
//
// When it cannot know (nil pod, unknown name) it answers yes: an exit is never taken for final
// on a guess.
func WillRestart(pod *corev1.Pod, name string, exitCode int32) bool {
	c, k, ok := container(pod, name)
	if !ok {
		return true
	}
	return willRestart(pod, c, k, exitCode, "")
}

func willRestart(pod *corev1.Pod, c *corev1.Container, k kind, exitCode int32, reason string) bool {
	if allContainersCouldRestart(pod) {
		return true
	}
	switch k {
	case sidecar:
		return true
	case plainInit:
		// computeInitContainerActions: an init container that did not fail counts as
		// initialized and is never run again; a failed one is restarted as
		// ShouldContainerBeRestarted says.
		if exitCode == 0 && reason != reasonOOMKilled {
			return false
		}
	}
	return containerShouldRestart(c, pod.Spec.RestartPolicy, exitCode)
}

// containerShouldRestart encodes ContainerShouldRestart of pkg/api/v1/pod/util.go with the
// ContainerRestartRules and RestartAllContainersOnContainerExits features on (both default on
// in v1.37).
func containerShouldRestart(c *corev1.Container, podPolicy corev1.RestartPolicy, exitCode int32) bool {
	if c.RestartPolicy != nil {
		if rule, ok := matchingRule(c.RestartPolicyRules, exitCode); ok {
			switch rule.Action {
			case corev1.ContainerRestartRuleActionRestart, corev1.ContainerRestartRuleActionRestartAllContainers:
				return true
			}
			// An unknown action falls back to the container's policy.
		}
		switch *c.RestartPolicy {
		case corev1.ContainerRestartPolicyAlways:
			return true
		case corev1.ContainerRestartPolicyOnFailure:
			return exitCode != 0
		case corev1.ContainerRestartPolicyNever:
			return false
		}
		// An unknown container policy falls back to the pod's.
	}
	switch podPolicy {
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	case corev1.RestartPolicyNever:
		return false
	}
	return true // Always, and the default when unset
}

// matchingRule returns the first rule whose exitCodes match exitCode. A rule without exitCodes or
// with an unknown operator never matches.
func matchingRule(rules []corev1.ContainerRestartRule, exitCode int32) (corev1.ContainerRestartRule, bool) {
	for _, r := range rules {
		if r.ExitCodes == nil {
			continue
		}
		in := false
		for _, v := range r.ExitCodes.Values {
			if v == exitCode {
				in = true
				break
			}
		}
		switch r.ExitCodes.Operator {
		case corev1.ContainerRestartRuleOnExitCodesOpIn:
			if in {
				return r, true
			}
		case corev1.ContainerRestartRuleOnExitCodesOpNotIn:
			if !in {
				return r, true
			}
		}
	}
	return corev1.ContainerRestartRule{}, false
}

// allContainersCouldRestart reports whether any container of the pod (init or regular) has a
// RestartAllContainers rule, whatever its own restartPolicy (AllContainersCouldRestart).
func allContainersCouldRestart(pod *corev1.Pod) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			for _, r := range list[i].RestartPolicyRules {
				if r.Action == corev1.ContainerRestartRuleActionRestartAllContainers {
					return true
				}
			}
		}
	}
	return false
}

// StartVerdict is what the start dependencies allow.
type StartVerdict struct {
	Pending []string     // deps not Ready yet (in spec order)
	Failed  []DepFailure // deps that will never be Ready (exited for good and not Ready)
}

// DepFailure names a start dependency that exited for good without being Ready, and its exit code.
type DepFailure struct {
	Name     string
	ExitCode int32
}

// CanStart reports whether every start dependency is Ready: none pending, none failed.
func (v StartVerdict) CanStart() bool { return len(v.Pending) == 0 && len(v.Failed) == 0 }

// StartState judges each start dependency, in spec order: Ready, failed (exited for good and not
// Ready), or pending (everything else, unknown names and missing statuses included).
func StartState(pod *corev1.Pod, startDeps []string) StartVerdict {
	var v StartVerdict
	for _, d := range startDeps {
		if Ready(pod, d) {
			continue
		}
		if code, exited := ExitedForGood(pod, d); exited {
			v.Failed = append(v.Failed, DepFailure{Name: d, ExitCode: code})
			continue
		}
		v.Pending = append(v.Pending, d)
	}
	return v
}

// StopVerdict says which stop dependencies have exited for good and which may still run.
type StopVerdict struct {
	Exited  []string
	Running []string
	Local   []string // those of Exited that only their state files showed exited (StopStateWith)
}

// Holds reports whether the stop condition holds: there is at least one stop dependency and all
// of them have exited for good.
func (v StopVerdict) Holds() bool { return len(v.Running) == 0 && len(v.Exited) > 0 }

// StopState sorts the stop dependencies, in spec order, into exited for good and the rest
// (running, restarting, not started yet, unknown).
func StopState(pod *corev1.Pod, stopDeps []string) StopVerdict {
	return StopStateWith(pod, stopDeps, nil, false)
}
