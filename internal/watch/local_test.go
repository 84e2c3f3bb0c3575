package watch

import (
	"reflect"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// exitAt is the moment the state files in these tests say the dependency exited.
var exitAt = time.Date(2026, 11, 22, 20, 0, 30, 500_000_000, time.UTC)

// at returns a status timestamp d after exitAt, with the whole-second precision of the API.
func at(d time.Duration) metav1.Time { return metav1.NewTime(exitAt.Add(d).Truncate(time.Second)) }

func runningSince(name string, t metav1.Time) corev1.ContainerStatus {
	s := running(name, true)
	s.State.Running.StartedAt = t
	return s
}

func TestLocalExitFinal(t *testing.T) {
	exit := func(code int32) LocalExit { return LocalExit{Code: code, At: exitAt} }
	killed := func(code int32) LocalExit { return LocalExit{Code: code, At: exitAt, Terminating: true} }
	never := func(opts ...podOpt) *corev1.Pod {
		return newPod(corev1.RestartPolicyNever, append([]podOpt{inits(ctr("proxy", sidecarPolicy)), regulars(ctr("main"), ctr("side"))}, opts...)...)
	}
	onFailure := func(opts ...podOpt) *corev1.Pod {
		return newPod(corev1.RestartPolicyOnFailure, append([]podOpt{regulars(ctr("main"), ctr("side"))}, opts...)...)
	}
	rule42 := newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42)), ctr("side")))
	tests := []struct {
		name string
		pod  *corev1.Pod
		ctr  string
		exit LocalExit
		self bool // this wrapper received SIGTERM
		want bool
	}{
		{"nil pod", nil, "main", exit(0), false, false},
		{"nil pod, self terminating", nil, "main", exit(0), true, false},
		{"unknown container", never(), "mian", exit(0), false, false},

		// the exit code judged by the kubelet's rules, the API showing nothing yet
		{"Never/0, no status", never(), "main", exit(0), false, true},
		{"Never/1, still waiting to start in the API", never(statuses(waiting("main", "ContainerCreating"))), "main", exit(1), false, true},
		{"Never/0, the API lags and shows it running", never(statuses(runningSince("main", at(-20*time.Second)))), "main", exit(0), false, true},
		{"Never/0, running since the same second", never(statuses(runningSince("main", at(0)))), "main", exit(0), false, true},
		{"OnFailure/0", onFailure(), "main", exit(0), false, true},
		{"OnFailure/1 will restart", onFailure(), "main", exit(1), false, false},
		{"OnFailure/1, terminated in the API too", onFailure(statuses(func() corev1.ContainerStatus {
			s := terminated("main", 1, "Error")
			s.State.Terminated.StartedAt = at(-10 * time.Second)
			return s
		}())), "main", exit(1), false, false},
		{"container Never+In 42, OnFailure pod/42", rule42, "main", exit(42), false, false},
		{"container Never+In 42, OnFailure pod/3", rule42, "main", exit(3), false, true},
		{"RestartAllContainers anywhere", never(func(p *corev1.Pod) {
			p.Spec.Containers[1] = ctr("side", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 9))
		}), "main", exit(0), false, false},
		{"native sidecar restarts", never(), "proxy", exit(0), false, false},
		{"plain init container completed", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main"))), "setup", exit(0), false, true},
		{"plain init container failed, pod Always", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main"))), "setup", exit(1), false, false},

		// instance tracking: an instance that started after the exit makes the file stale
		{"stale: a newer instance runs", never(statuses(runningSince("main", at(2*time.Second)))), "main", exit(0), false, false},
		{"stale: a newer instance terminated", onFailure(statuses(func() corev1.ContainerStatus {
			s := terminated("main", 1, "Error")
			s.RestartCount = 1
			s.State.Terminated.StartedAt = at(5 * time.Second)
			return s
		}())), "main", exit(0), false, false},
		{"stale: a newer instance exited and waits to restart", onFailure(statuses(func() corev1.ContainerStatus {
			s := waitingAfter("main", "CrashLoopBackOff", 1)
			s.LastTerminationState.Terminated.StartedAt = at(5 * time.Second)
			return s
		}())), "main", exit(0), false, false},
		{"stale even during deletion", never(deleted, statuses(runningSince("main", at(2*time.Second)))), "main", exit(0), false, false},
		{"stale even after SIGTERM", never(statuses(runningSince("main", at(2*time.Second)))), "main", exit(0), true, false},
		{"not stale: the exiting instance's own lastState", onFailure(statuses(func() corev1.ContainerStatus {
			s := waitingAfter("main", "CrashLoopBackOff", 1)
			s.LastTerminationState.Terminated.StartedAt = at(-5 * time.Second)
			return s
		}())), "main", exit(0), false, true},

		// nothing restarts while the pod terminates
		{"deletion/OnFailure/1", onFailure(deleted), "main", exit(1), false, true},
		{"deletion/native sidecar", never(deleted), "proxy", exit(143), false, true},
		{"phase Failed/OnFailure/1", onFailure(phase(corev1.PodFailed)), "main", exit(1), false, true},

		// this wrapper received SIGTERM: any exit counts
		{"self terminating/OnFailure/1", onFailure(), "main", exit(1), true, true},
		{"self terminating/native sidecar", never(), "proxy", exit(143), true, true},
		{"self terminating/dependency killed too", onFailure(), "main", killed(0), true, true},

		// the dependency was being stopped by the kubelet and this wrapper was not: the API decides
		{"dependency killed alone/Never/143", never(), "main", killed(143), false, false},
		{"dependency killed alone/OnFailure/0", onFailure(), "main", killed(0), false, false},
		{"dependency killed, pod deleted", onFailure(deleted), "main", killed(0), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			if got := LocalExitFinal(tt.pod, tt.ctr, tt.exit, tt.self); got != tt.want {
				t.Errorf("LocalExitFinal(%q, %+v, self terminating %v) = %v, want %v", tt.ctr, tt.exit, tt.self, got, tt.want)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("LocalExitFinal modified the pod")
			}
		})
	}
}

func TestStopStateWith(t *testing.T) {
	pod := newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main"), ctr("report"), ctr("proxy")),
		statuses(terminated("report", 0, "Completed"), running("main", true)))
	local := map[string]LocalExit{"main": {Code: 0, At: time.Now().Add(time.Hour)}}
	tests := []struct {
		name                       string
		pod                        *corev1.Pod
		deps                       []string
		local                      map[string]LocalExit
		self                       bool
		wantExited, wantLocal, run []string
		holds                      bool
	}{
		{"API only", pod, []string{"main", "report"}, nil, false, []string{"report"}, nil, []string{"main"}, false},
		{"file completes it", pod, []string{"main", "report"}, local, false, []string{"main", "report"}, []string{"main"}, nil, true},
		{"file of a retried exit", pod, []string{"main"}, map[string]LocalExit{"main": {Code: 1, At: time.Now().Add(time.Hour)}}, false, nil, nil, []string{"main"}, false},
		{"retried exit after SIGTERM", pod, []string{"main"}, map[string]LocalExit{"main": {Code: 1, At: time.Now().Add(time.Hour)}}, true, []string{"main"}, []string{"main"}, nil, true},
		{"stale file", pod, []string{"main"}, map[string]LocalExit{"main": {Code: 0, At: time.Now().Add(-time.Hour)}}, false, nil, nil, []string{"main"}, false},
		{"files for other containers do not count", pod, []string{"main"}, map[string]LocalExit{"proxy": {Code: 0, At: time.Now()}}, false, nil, nil, []string{"main"}, false},
		{"nil pod", nil, []string{"main"}, local, true, nil, nil, []string{"main"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := StopStateWith(tt.pod, tt.deps, tt.local, tt.self)
			if !slices.Equal(v.Exited, tt.wantExited) || !slices.Equal(v.Local, tt.wantLocal) || !slices.Equal(v.Running, tt.run) || v.Holds() != tt.holds {
				t.Errorf("got exited %q local %q running %q holds %v; want %q %q %q %v",
					v.Exited, v.Local, v.Running, v.Holds(), tt.wantExited, tt.wantLocal, tt.run, tt.holds)
			}
		})
	}
}

// Without the API, the state files are judged against the pod the spec states.
func TestLocalExitFinalOnTheAssumedPod(t *testing.T) {
	at := time.Now()
	never, onFailure := AssumedPod(corev1.RestartPolicyNever, "main"), AssumedPod(corev1.RestartPolicyOnFailure, "main")
	tests := []struct {
		name string
		pod  *corev1.Pod
		e    LocalExit
		term bool
		want bool
	}{
		{"Never, exit 1", never, LocalExit{Code: 1, At: at}, false, true},
		{"OnFailure, exit 1: retried", onFailure, LocalExit{Code: 1, At: at}, false, false},
		{"OnFailure, exit 0", onFailure, LocalExit{Code: 0, At: at}, false, true},
		{"OnFailure, exit 1, this wrapper terminating", onFailure, LocalExit{Code: 1, At: at}, true, true},
		{"Never, the dependency was being stopped", never, LocalExit{Code: 143, At: at, Terminating: true}, false, false},
	}
	for _, tt := range tests {
		if got := LocalExitFinal(tt.pod, "main", tt.e, tt.term); got != tt.want {
			t.Errorf("%s: LocalExitFinal = %v, want %v", tt.name, got, tt.want)
		}
	}
	if v := StopStateWith(never, []string{"main"}, map[string]LocalExit{"main": {Code: 0, At: at}}, false); !v.Holds() {
		t.Errorf("StopStateWith on the assumed pod: %+v, want the stop to hold", v)
	}
}
