// Package podstatus changes container statuses the way the kubelet writes them, for tests and
// benchmarks that play the kubelet's part by writing pod status through the API (or a fake
// clientset). Test-only: never imported by the shipped binary.
package podstatus

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Change is one change to a container's status.
type Change func(*corev1.ContainerStatus)

// Running makes the container a running instance started now: started, and ready as given.
func Running(ready bool) Change {
	return func(s *corev1.ContainerStatus) {
		started := true
		s.Started, s.Ready = &started, ready
		s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	}
}

// Terminated makes the container's current instance terminated now with code: not started, not
// ready, reason Completed or Error, startedAt kept from the running instance when there was one.
func Terminated(code int32) Change {
	return func(s *corev1.ContainerStatus) {
		started, now := false, metav1.Now()
		startedAt := now
		if r := s.State.Running; r != nil {
			startedAt = r.StartedAt
		}
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		s.Started, s.Ready = &started, false
		s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: startedAt, FinishedAt: now,
		}}
	}
}

// Set applies change to the named container's status, in containerStatuses or
// initContainerStatuses; it reports whether the container has a status to change.
func Set(s *corev1.PodStatus, name string, change Change) bool {
	for _, list := range [][]corev1.ContainerStatus{s.ContainerStatuses, s.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				change(&list[i])
				return true
			}
		}
	}
	return false
}
