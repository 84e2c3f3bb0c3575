package watch

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// defaultGrace is the grace period when the pod does not say (the API server defaults
// terminationGracePeriodSeconds to 30 s; pods built by hand may lack it).
const defaultGrace = 30 * time.Second

// KillDeadline is when the kubelet's SIGKILL may come for container self (its name; "" when
// unknown) once the termination signal arrived at termAt, and the grace period behind it. It
// follows the kubelet's killContainer (kuberuntime_container.go, setTerminationGracePeriod):
//   - a deletion (deletionTimestamp set): the deletion's grace period, deletionGracePeriodSeconds.
//     The kubelet runs a preStop hook first and takes its time out of that grace period, so the
//     signal comes late by the hook's time; the API server set deletionTimestamp to the moment
//     the grace period runs out, so the deadline is never past it;
//   - otherwise a single container is being killed, by a failed liveness or startup probe (the
//     probe's own terminationGracePeriodSeconds when set) or for another reason (the pod's).
//     Which one cannot be seen from here, so the shortest of those that apply counts.
//
// A nil pod gives termAt + 30 s.
func KillDeadline(pod *corev1.Pod, self string, termAt time.Time) (time.Time, time.Duration) {
	if pod == nil {
		return termAt.Add(defaultGrace), defaultGrace
	}
	if pod.DeletionTimestamp != nil {
		grace := podGrace(pod)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = seconds(*pod.DeletionGracePeriodSeconds)
		}
		deadline := termAt.Add(grace)
		if at := pod.DeletionTimestamp.Time; at.Before(deadline) {
			deadline = at
		}
		return deadline, grace
	}
	grace := podGrace(pod)
	if c, _, ok := container(pod, self); ok {
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.StartupProbe} {
			if p != nil && p.TerminationGracePeriodSeconds != nil {
				grace = min(grace, seconds(*p.TerminationGracePeriodSeconds))
			}
		}
	}
	return termAt.Add(grace), grace
}

func podGrace(pod *corev1.Pod) time.Duration {
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		return seconds(*s)
	}
	return defaultGrace
}

func seconds(s int64) time.Duration { return time.Duration(max(s, 0)) * time.Second }
