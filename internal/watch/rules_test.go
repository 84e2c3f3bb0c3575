package watch

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ---- builders for hand-made pods ----

func ptr[T any](v T) *T { return &v }

type ctrOpt func(*corev1.Container)

func ctr(name string, opts ...ctrOpt) corev1.Container {
	c := corev1.Container{Name: name, Image: "busybox"}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func policy(p corev1.ContainerRestartPolicy) ctrOpt {
	return func(c *corev1.Container) { c.RestartPolicy = ptr(p) }
}

func rule(action corev1.ContainerRestartRuleAction, op corev1.ContainerRestartRuleOnExitCodesOperator, codes ...int32) ctrOpt {
	return func(c *corev1.Container) {
		c.RestartPolicyRules = append(c.RestartPolicyRules, corev1.ContainerRestartRule{
			Action:    action,
			ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: op, Values: codes},
		})
	}
}

const (
	restart    = corev1.ContainerRestartRuleActionRestart
	restartAll = corev1.ContainerRestartRuleActionRestartAllContainers
	in         = corev1.ContainerRestartRuleOnExitCodesOpIn
	notIn      = corev1.ContainerRestartRuleOnExitCodesOpNotIn
)

var sidecarPolicy = policy(corev1.ContainerRestartPolicyAlways)

type podOpt func(*corev1.Pod)

func newPod(restartPolicy corev1.RestartPolicy, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "job-x"},
		Spec:       corev1.PodSpec{RestartPolicy: restartPolicy},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func inits(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, cs...) }
}

func regulars(cs ...corev1.Container) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, cs...) }
}

func initStatuses(ss ...corev1.ContainerStatus) podOpt {
	return func(p *corev1.Pod) { p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, ss...) }
}

func statuses(ss ...corev1.ContainerStatus) podOpt {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, ss...) }
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func deleted(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.DeletionGracePeriodSeconds = ptr(int64(30))
}

func running(name string, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Ready: ready, Started: ptr(true), ContainerID: "containerd://" + name + "-1",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}
}

func terminated(name string, code int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Started: ptr(false), ContainerID: "containerd://" + name + "-1",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, ContainerID: "containerd://" + name + "-1",
		}},
	}
}

// waitingAfter is a restarting container: waiting (e.g. CrashLoopBackOff) with the previous
// instance's exit in lastState.
func waitingAfter(name, reason string, code int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Started: ptr(false), RestartCount: 1, ContainerID: "containerd://" + name + "-1",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: "Error", ContainerID: "containerd://" + name + "-1",
		}},
	}
}

func waiting(name, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Started: ptr(false),
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
	}
}

func withReady(s corev1.ContainerStatus) corev1.ContainerStatus { s.Ready = true; return s }

// ---- WillRestart: the table of notes/kubelet-status.md and the kubelet's init-container logic ----

func TestWillRestart(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		ctr  string
		code int32
		want bool
	}{
		// container restartPolicy unset: the pod's policy
		{"unset/pod Always/0", newPod(corev1.RestartPolicyAlways, regulars(ctr("main"))), "main", 0, true},
		{"unset/pod Always/1", newPod(corev1.RestartPolicyAlways, regulars(ctr("main"))), "main", 1, true},
		{"unset/pod OnFailure/0", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main"))), "main", 0, false},
		{"unset/pod OnFailure/1", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main"))), "main", 1, true},
		{"unset/pod Never/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main"))), "main", 0, false},
		{"unset/pod Never/137", newPod(corev1.RestartPolicyNever, regulars(ctr("main"))), "main", 137, false},
		{"unset/pod policy unset defaults to Always", newPod("", regulars(ctr("main"))), "main", 0, true},

		// container restartPolicy Always: any code, whatever the pod says
		{"Always/pod Never/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyAlways)))), "main", 0, true},
		{"Always/pod Never/2", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyAlways)))), "main", 2, true},

		// container OnFailure
		{"OnFailure/no rules/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure)))), "main", 0, false},
		{"OnFailure/no rules/1", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure)))), "main", 1, true},
		{"OnFailure/In rule matches 0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, in, 0)))), "main", 0, true},
		{"OnFailure/In rule does not match/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, in, 7)))), "main", 0, false},
		{"OnFailure/In rule does not match/1", newPod(corev1.RestartPolicyAlways, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, in, 7)))), "main", 1, true},
		{"OnFailure overrides pod Always/0", newPod(corev1.RestartPolicyAlways, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure)))), "main", 0, false},
		{"OnFailure/NotIn rule matches 0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, notIn, 1)))), "main", 0, true},
		{"OnFailure/NotIn rule does not match/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, notIn, 0)))), "main", 0, false},
		{"OnFailure/NotIn rule does not match/1", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, notIn, 1)))), "main", 1, true},
		{"Always/rule does not match/0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyAlways), rule(restart, in, 7)))), "main", 0, true},

		// container Never
		{"Never/no rules/1", newPod(corev1.RestartPolicyAlways, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever)))), "main", 1, false},
		{"Never/In rule matches", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42, 43)))), "main", 43, true},
		{"Never/In rule does not match", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42, 43)))), "main", 1, false},
		{"Never/NotIn rule matches", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, notIn, 0)))), "main", 1, true},
		{"Never/NotIn rule does not match", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, notIn, 0)))), "main", 0, false},
		{"Never/NotIn rule does not match/pod Always", newPod(corev1.RestartPolicyAlways, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, notIn, 0, 1)))), "main", 1, false},
		// issue 7's scenario: container Never plus a rule restarting on 42, in an OnFailure pod
		{"Never+In 42 in an OnFailure pod/42", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42)))), "main", 42, true},
		{"Never+In 42 in an OnFailure pod/3", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42)))), "main", 3, false},
		{"Never+In 42 in an OnFailure pod/0", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 42)))), "main", 0, false},
		{"Never/NotIn empty set matches everything", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, notIn)))), "main", 0, true},
		{"Never/second rule matches", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 1), rule(restart, in, 2)))), "main", 2, true},

		// first match wins: the first matching rule decides even when a later one would too.
		// Both valid actions mean restart, so the order shows with an action this version does
		// not know: the kubelet falls back to the container's policy and never reads rule two.
		{"first match wins", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule("Future", in, 1), rule(restart, in, 1)))), "main", 1, false},
		{"rule without exitCodes never matches", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), func(c *corev1.Container) {
			c.RestartPolicyRules = append(c.RestartPolicyRules, corev1.ContainerRestartRule{Action: restart})
		}))), "main", 1, false},
		{"rule with unknown operator is skipped", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, "Exists", 1), rule(restart, in, 1)))), "main", 1, true},

		// rules on a container without its own restartPolicy (rejected by the API): ignored
		{"rule without container policy is ignored", newPod(corev1.RestartPolicyNever, regulars(ctr("main", rule(restart, in, 1)))), "main", 1, false},
		{"rule without container policy is ignored/pod OnFailure", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main", rule(restart, in, 0)))), "main", 0, false},

		// RestartAllContainers anywhere in the pod: nothing is final until the phase is terminal
		{"RestartAllContainers on self, matching", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3)))), "main", 3, true},
		{"RestartAllContainers on self, not matching", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3)))), "main", 0, true},
		{"RestartAllContainers on another container", newPod(corev1.RestartPolicyNever, regulars(ctr("main"), ctr("worker", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3)))), "main", 0, true},
		{"RestartAllContainers on an init container", newPod(corev1.RestartPolicyNever, inits(ctr("setup", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, notIn, 0))), regulars(ctr("main"))), "main", 0, true},
		{"RestartAllContainers on a container without policy still counts", newPod(corev1.RestartPolicyNever, regulars(ctr("main"), ctr("worker", rule(restartAll, in, 3)))), "main", 0, true},
		{"RestartAllContainers makes a completed init container restartable", newPod(corev1.RestartPolicyNever, inits(ctr("setup")), regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 9)))), "setup", 0, true},

		// native sidecars: always restarted
		{"sidecar/pod Never/0", newPod(corev1.RestartPolicyNever, inits(ctr("proxy", sidecarPolicy)), regulars(ctr("main"))), "proxy", 0, true},
		{"sidecar/pod Never/143", newPod(corev1.RestartPolicyNever, inits(ctr("proxy", sidecarPolicy)), regulars(ctr("main"))), "proxy", 143, true},
		{"sidecar/pod OnFailure/0", newPod(corev1.RestartPolicyOnFailure, inits(ctr("proxy", sidecarPolicy)), regulars(ctr("main"))), "proxy", 0, true},

		// plain init containers: completion is final; a failure follows the policies.
		// Pod Always behaves as OnFailure for them.
		{"init/pod Always/0", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main"))), "setup", 0, false},
		{"init/pod Always/1", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main"))), "setup", 1, true},
		{"init/pod OnFailure/0", newPod(corev1.RestartPolicyOnFailure, inits(ctr("setup")), regulars(ctr("main"))), "setup", 0, false},
		{"init/pod OnFailure/1", newPod(corev1.RestartPolicyOnFailure, inits(ctr("setup")), regulars(ctr("main"))), "setup", 1, true},
		{"init/pod Never/1", newPod(corev1.RestartPolicyNever, inits(ctr("setup")), regulars(ctr("main"))), "setup", 1, false},
		{"init/container Never/rule matches", newPod(corev1.RestartPolicyNever, inits(ctr("setup", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 75))), regulars(ctr("main"))), "setup", 75, true},
		{"init/container OnFailure/pod Never/1", newPod(corev1.RestartPolicyNever, inits(ctr("setup", policy(corev1.ContainerRestartPolicyOnFailure))), regulars(ctr("main"))), "setup", 1, true},
		{"init/rule matching 0 does not rerun a completed init", newPod(corev1.RestartPolicyNever, inits(ctr("setup", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 0))), regulars(ctr("main"))), "setup", 0, false},

		// values this version does not know: the kubelet falls back to the next level
		{"unknown container policy falls back to the pod's", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy("Sometimes")))), "main", 1, false},
		{"unknown pod policy counts as Always", newPod("Sometimes", regulars(ctr("main"))), "main", 0, true},

		// cannot know: not final
		{"unknown container", newPod(corev1.RestartPolicyNever, regulars(ctr("main"))), "nope", 1, true},
		{"nil pod", nil, "main", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			if got := WillRestart(tt.pod, tt.ctr, tt.code); got != tt.want {
				t.Errorf("WillRestart(%q, %d) = %v, want %v", tt.ctr, tt.code, got, tt.want)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("WillRestart modified the pod")
			}
		})
	}
}

// ---- ExitedForGood ----

func TestExitedForGood(t *testing.T) {
	job := func(opts ...podOpt) *corev1.Pod {
		return newPod(corev1.RestartPolicyNever, append([]podOpt{
			inits(ctr("install"), ctr("proxy", sidecarPolicy)),
			regulars(ctr("main")),
		}, opts...)...)
	}
	tests := []struct {
		name     string
		pod      *corev1.Pod
		ctr      string
		wantCode int32
		wantOK   bool
	}{
		{"nil pod", nil, "main", 0, false},
		{"empty status", job(), "main", 0, false},
		{"unknown container", job(statuses(terminated("main", 1, "Error"))), "mian", 0, false},
		{"other containers have statuses, not this one", job(initStatuses(running("proxy", true))), "main", 0, false},
		{"waiting for first start", job(statuses(waiting("main", "PodInitializing"))), "main", 0, false},
		{"image pull error", job(statuses(waiting("main", "ErrImagePull"))), "main", 0, false},
		{"running", job(statuses(running("main", true))), "main", 0, false},
		{"running again after an exit", job(statuses(func() corev1.ContainerStatus {
			s := running("main", true)
			s.LastTerminationState = terminated("main", 1, "Error").State
			return s
		}())), "main", 0, false},

		// pod Never: every exit is final
		{"terminated/Never/0", job(statuses(terminated("main", 0, "Completed"))), "main", 0, true},
		{"terminated/Never/3", job(statuses(terminated("main", 3, "Error"))), "main", 3, true},
		{"terminated/Never/OOMKilled", job(statuses(terminated("main", 137, "OOMKilled"))), "main", 137, true},

		// pod OnFailure
		{"terminated/OnFailure/0", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main")), statuses(terminated("main", 0, "Completed"))), "main", 0, true},
		{"terminated/OnFailure/2 restarts", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main")), statuses(terminated("main", 2, "Error"))), "main", 0, false},
		{"CrashLoopBackOff/OnFailure", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main")), statuses(waitingAfter("main", "CrashLoopBackOff", 2))), "main", 0, false},

		// pod Always
		{"terminated/Always/0 restarts", newPod(corev1.RestartPolicyAlways, regulars(ctr("main")), statuses(terminated("main", 0, "Completed"))), "main", 0, false},
		{"CrashLoopBackOff/Always", newPod(corev1.RestartPolicyAlways, regulars(ctr("main")), statuses(waitingAfter("main", "CrashLoopBackOff", 0))), "main", 0, false},

		// container-level rules
		{"terminated/Never/rule In matches", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 75))), statuses(terminated("main", 75, "Error"))), "main", 0, false},
		{"terminated/Never/rule In does not match", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 75))), statuses(terminated("main", 1, "Error"))), "main", 1, true},
		{"terminated/OnFailure/rule NotIn matches 0", newPod(corev1.RestartPolicyNever, regulars(ctr("main", policy(corev1.ContainerRestartPolicyOnFailure), rule(restart, notIn, 1))), statuses(terminated("main", 0, "Completed"))), "main", 0, false},

		// waiting with lastState.terminated: the kubelet writes waiting over a terminated instance
		// only once it will start a new one, so a "no" computed from lastState is stale.
		{"waiting+lastState/decision no is stale", newPod(corev1.RestartPolicyOnFailure, regulars(ctr("main")), statuses(waitingAfter("main", "CrashLoopBackOff", 0))), "main", 0, false},
		{"waiting+lastState/ContainerStatusUnknown", newPod(corev1.RestartPolicyNever, regulars(ctr("main")), statuses(waitingAfter("main", "ContainerCreating", 137))), "main", 0, false},
		{"waiting+lastState/deletion makes it final", newPod(corev1.RestartPolicyAlways, deleted, regulars(ctr("main")), statuses(waitingAfter("main", "CrashLoopBackOff", 2))), "main", 2, true},
		{"waiting+lastState/terminal phase", newPod(corev1.RestartPolicyOnFailure, phase(corev1.PodFailed), regulars(ctr("main")), statuses(waitingAfter("main", "CrashLoopBackOff", 2))), "main", 2, true},

		// deletion and terminal phase: nothing restarts any more
		{"deletion/pod Always/terminated", newPod(corev1.RestartPolicyAlways, deleted, regulars(ctr("main")), statuses(terminated("main", 0, "Completed"))), "main", 0, true},
		{"deletion/container Never rule matches", newPod(corev1.RestartPolicyNever, deleted, regulars(ctr("main", policy(corev1.ContainerRestartPolicyNever), rule(restart, in, 75))), statuses(terminated("main", 75, "Error"))), "main", 75, true},
		{"deletion/still running", newPod(corev1.RestartPolicyAlways, deleted, regulars(ctr("main")), statuses(running("main", true))), "main", 0, false},
		{"deletion/never started", newPod(corev1.RestartPolicyAlways, deleted, regulars(ctr("main")), statuses(waiting("main", "ContainerCreating"))), "main", 0, false},
		{"phase Succeeded/pod Always", newPod(corev1.RestartPolicyAlways, phase(corev1.PodSucceeded), regulars(ctr("main")), statuses(terminated("main", 0, "Completed"))), "main", 0, true},
		{"phase Failed/pod OnFailure", newPod(corev1.RestartPolicyOnFailure, phase(corev1.PodFailed), regulars(ctr("main")), statuses(terminated("main", 1, "Error"))), "main", 1, true},

		// native sidecars, reported in initContainerStatuses
		{"sidecar/running", job(initStatuses(terminated("install", 0, "Completed"), running("proxy", true))), "proxy", 0, false},
		{"sidecar/terminated while the pod runs", job(initStatuses(terminated("install", 0, "Completed"), terminated("proxy", 0, "Completed"))), "proxy", 0, false},
		{"sidecar/CrashLoopBackOff", job(initStatuses(terminated("install", 0, "Completed"), waitingAfter("proxy", "CrashLoopBackOff", 1))), "proxy", 0, false},
		{"sidecar/terminated after main is done, phase still Running", job(initStatuses(terminated("install", 0, "Completed"), terminated("proxy", 143, "Error")), statuses(terminated("main", 0, "Completed"))), "proxy", 0, false},
		{"sidecar/terminated, pod deleted", job(deleted, initStatuses(terminated("install", 0, "Completed"), terminated("proxy", 143, "Error"))), "proxy", 143, true},
		{"sidecar/terminated, phase Succeeded", job(phase(corev1.PodSucceeded), initStatuses(terminated("install", 0, "Completed"), terminated("proxy", 143, "Error")), statuses(terminated("main", 0, "Completed"))), "proxy", 143, true},

		// plain init containers
		{"init/completed/pod Always", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main")), initStatuses(withReady(terminated("setup", 0, "Completed")))), "setup", 0, true},
		{"init/failed/pod Always restarts", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main")), initStatuses(terminated("setup", 1, "Error"))), "setup", 0, false},
		{"init/failed/pod OnFailure restarts", newPod(corev1.RestartPolicyOnFailure, inits(ctr("setup")), regulars(ctr("main")), initStatuses(waitingAfter("setup", "CrashLoopBackOff", 1))), "setup", 0, false},
		{"init/failed/pod Never", newPod(corev1.RestartPolicyNever, inits(ctr("setup")), regulars(ctr("main")), initStatuses(terminated("setup", 1, "Error"))), "setup", 1, true},
		{"init/OOMKilled with 0/pod OnFailure", newPod(corev1.RestartPolicyOnFailure, inits(ctr("setup")), regulars(ctr("main")), initStatuses(terminated("setup", 0, "OOMKilled"))), "setup", 0, true},
		{"init/OOMKilled with 0/pod Always restarts", newPod(corev1.RestartPolicyAlways, inits(ctr("setup")), regulars(ctr("main")), initStatuses(terminated("setup", 0, "OOMKilled"))), "setup", 0, false},

		// RestartAllContainers: no exit is final until the phase is terminal; deletion ends it too
		{"RestartAllContainers/terminated", newPod(corev1.RestartPolicyNever, regulars(ctr("main"), ctr("worker", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3))), statuses(terminated("main", 0, "Completed"))), "main", 0, false},
		{"RestartAllContainers/restarting", newPod(corev1.RestartPolicyNever, regulars(ctr("main"), ctr("worker", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3))), statuses(waitingAfter("main", "RestartingAllContainers", 137))), "main", 0, false},
		{"RestartAllContainers/phase Failed", newPod(corev1.RestartPolicyNever, phase(corev1.PodFailed), regulars(ctr("main"), ctr("worker", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3))), statuses(terminated("main", 0, "Completed"))), "main", 0, true},
		{"RestartAllContainers/deletion", newPod(corev1.RestartPolicyNever, deleted, regulars(ctr("main"), ctr("worker", policy(corev1.ContainerRestartPolicyNever), rule(restartAll, in, 3))), statuses(terminated("main", 4, "Error"))), "main", 4, true},

		// a status in the other list is still found
		{"status in the other list", newPod(corev1.RestartPolicyNever, regulars(ctr("main")), initStatuses(terminated("main", 5, "Error"))), "main", 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			code, ok := ExitedForGood(tt.pod, tt.ctr)
			if code != tt.wantCode || ok != tt.wantOK {
				t.Errorf("ExitedForGood(%q) = (%d, %v), want (%d, %v)", tt.ctr, code, ok, tt.wantCode, tt.wantOK)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("ExitedForGood modified the pod")
			}
		})
	}
}

// ---- Ready ----

func TestReady(t *testing.T) {
	base := func(opts ...podOpt) *corev1.Pod {
		return newPod(corev1.RestartPolicyNever, append([]podOpt{
			inits(ctr("setup"), ctr("proxy", sidecarPolicy)),
			regulars(ctr("main")),
		}, opts...)...)
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		ctr  string
		want bool
	}{
		{"nil pod", nil, "main", false},
		{"empty status", base(), "main", false},
		{"unknown container", base(statuses(running("main", true))), "nope", false},
		{"empty name", base(statuses(running("main", true))), "", false},
		{"regular/running ready", base(statuses(running("main", true))), "main", true},
		{"regular/running not ready", base(statuses(running("main", false))), "main", false},
		{"regular/ready but terminated", base(statuses(withReady(terminated("main", 0, "Completed")))), "main", false},
		{"regular/waiting", base(statuses(waiting("main", "ContainerCreating"))), "main", false},
		{"regular/ready while the pod is deleted", base(deleted, statuses(running("main", true))), "main", true},
		{"sidecar/running ready", base(initStatuses(withReady(terminated("setup", 0, "Completed")), running("proxy", true))), "proxy", true},
		{"sidecar/running, started, not ready", base(initStatuses(withReady(terminated("setup", 0, "Completed")), running("proxy", false))), "proxy", false},
		{"sidecar/crash looping", base(initStatuses(withReady(terminated("setup", 0, "Completed")), waitingAfter("proxy", "CrashLoopBackOff", 1))), "proxy", false},
		{"sidecar/not in containerStatuses", base(statuses(running("main", true))), "proxy", false},
		{"init/completed, ready", base(initStatuses(withReady(terminated("setup", 0, "Completed")))), "setup", true},
		{"init/completed, ready not yet set", base(initStatuses(terminated("setup", 0, "Completed"))), "setup", true},
		{"init/running", base(initStatuses(running("setup", false))), "setup", false},
		{"init/failed", base(initStatuses(terminated("setup", 1, "Error"))), "setup", false},
		{"init/retrying", base(initStatuses(waitingAfter("setup", "CrashLoopBackOff", 1))), "setup", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			if got := Ready(tt.pod, tt.ctr); got != tt.want {
				t.Errorf("Ready(%q) = %v, want %v", tt.ctr, got, tt.want)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("Ready modified the pod")
			}
		})
	}
}

// ---- Terminating ----

func TestTerminating(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"nil pod", nil, false},
		{"pending", newPod(corev1.RestartPolicyNever, phase(corev1.PodPending)), false},
		{"running", newPod(corev1.RestartPolicyNever), false},
		{"no phase yet", newPod(corev1.RestartPolicyNever, phase("")), false},
		{"unknown phase", newPod(corev1.RestartPolicyNever, phase(corev1.PodUnknown)), false},
		{"deleted", newPod(corev1.RestartPolicyNever, deleted), true},
		{"succeeded", newPod(corev1.RestartPolicyNever, phase(corev1.PodSucceeded)), true},
		{"failed", newPod(corev1.RestartPolicyNever, phase(corev1.PodFailed)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Terminating(tt.pod); got != tt.want {
				t.Errorf("Terminating = %v, want %v", got, tt.want)
			}
		})
	}
}

// ---- StartState / StopState ----

func TestStartState(t *testing.T) {
	pod := newPod(corev1.RestartPolicyNever,
		inits(ctr("install"), ctr("proxy", sidecarPolicy), ctr("migrate")),
		regulars(ctr("db"), ctr("gone"), ctr("main"), ctr("late")),
		initStatuses(
			withReady(terminated("install", 0, "Completed")),
			running("proxy", true),
			terminated("migrate", 2, "Error"),
		),
		statuses(
			running("db", false),
			terminated("gone", 3, "Error"),
			running("main", true),
		),
	)
	tests := []struct {
		name        string
		pod         *corev1.Pod
		deps        []string
		wantPending []string
		wantFailed  []DepFailure
		canStart    bool
	}{
		{"no deps", pod, nil, nil, nil, true},
		{"sidecar ready", pod, []string{"proxy"}, nil, nil, true},
		{"init completed and sidecar ready", pod, []string{"install", "proxy"}, nil, nil, true},
		{"regular ready", pod, []string{"main"}, nil, nil, true},
		{"not ready yet", pod, []string{"proxy", "db"}, []string{"db"}, nil, false},
		{"no status yet", pod, []string{"late"}, []string{"late"}, nil, false},
		{"unknown name is pending", pod, []string{"nope"}, []string{"nope"}, nil, false},
		{"exited for good", pod, []string{"gone"}, nil, []DepFailure{{Name: "gone", ExitCode: 3}}, false},
		{"failed init container", pod, []string{"migrate"}, nil, []DepFailure{{Name: "migrate", ExitCode: 2}}, false},
		{"mixed, in spec order", pod, []string{"late", "proxy", "gone", "db", "migrate"}, []string{"late", "db"},
			[]DepFailure{{Name: "gone", ExitCode: 3}, {Name: "migrate", ExitCode: 2}}, false},
		{"nil pod", nil, []string{"proxy"}, []string{"proxy"}, nil, false},
		{"restarting dep is pending, not failed",
			newPod(corev1.RestartPolicyOnFailure, regulars(ctr("db"), ctr("main")), statuses(waitingAfter("db", "CrashLoopBackOff", 1))),
			[]string{"db"}, []string{"db"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := StartState(tt.pod, tt.deps)
			if !slices.Equal(v.Pending, tt.wantPending) {
				t.Errorf("Pending = %q, want %q", v.Pending, tt.wantPending)
			}
			if !slices.Equal(v.Failed, tt.wantFailed) {
				t.Errorf("Failed = %v, want %v", v.Failed, tt.wantFailed)
			}
			if v.CanStart() != tt.canStart {
				t.Errorf("CanStart = %v, want %v", v.CanStart(), tt.canStart)
			}
		})
	}
}

func TestStopState(t *testing.T) {
	pod := func(policy corev1.RestartPolicy, opts ...podOpt) *corev1.Pod {
		return newPod(policy, append([]podOpt{
			inits(ctr("proxy", sidecarPolicy)),
			regulars(ctr("main"), ctr("report")),
		}, opts...)...)
	}
	tests := []struct {
		name        string
		pod         *corev1.Pod
		deps        []string
		wantExited  []string
		wantRunning []string
		holds       bool
	}{
		{"no stop deps never holds", pod(corev1.RestartPolicyNever, statuses(terminated("main", 0, "Completed"))), nil, nil, nil, false},
		{"main running", pod(corev1.RestartPolicyNever, statuses(running("main", true))), []string{"main"}, nil, []string{"main"}, false},
		{"main exited for good", pod(corev1.RestartPolicyNever, statuses(terminated("main", 0, "Completed"))), []string{"main"}, []string{"main"}, nil, true},
		{"main failed for good", pod(corev1.RestartPolicyNever, statuses(terminated("main", 1, "Error"))), []string{"main"}, []string{"main"}, nil, true},
		{"main will be retried", pod(corev1.RestartPolicyOnFailure, statuses(terminated("main", 1, "Error"))), []string{"main"}, nil, []string{"main"}, false},
		{"main crash looping", pod(corev1.RestartPolicyOnFailure, statuses(waitingAfter("main", "CrashLoopBackOff", 1))), []string{"main"}, nil, []string{"main"}, false},
		{"one of two exited", pod(corev1.RestartPolicyNever, statuses(terminated("main", 0, "Completed"), running("report", true))), []string{"main", "report"}, []string{"main"}, []string{"report"}, false},
		{"both exited", pod(corev1.RestartPolicyNever, statuses(terminated("main", 0, "Completed"), terminated("report", 2, "Error"))), []string{"report", "main"}, []string{"report", "main"}, nil, true},
		{"no status yet", pod(corev1.RestartPolicyNever), []string{"main"}, nil, []string{"main"}, false},
		{"unknown name never holds", pod(corev1.RestartPolicyNever, statuses(terminated("main", 0, "Completed"))), []string{"main", "nope"}, []string{"main"}, []string{"nope"}, false},
		{"sidecar exited while the pod runs", pod(corev1.RestartPolicyNever, initStatuses(terminated("proxy", 1, "Error"))), []string{"proxy"}, nil, []string{"proxy"}, false},
		{"crash looping main during deletion", pod(corev1.RestartPolicyOnFailure, deleted, statuses(waitingAfter("main", "CrashLoopBackOff", 1))), []string{"main"}, []string{"main"}, nil, true},
		{"nil pod", nil, []string{"main"}, nil, []string{"main"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := StopState(tt.pod, tt.deps)
			if !slices.Equal(v.Exited, tt.wantExited) {
				t.Errorf("Exited = %q, want %q", v.Exited, tt.wantExited)
			}
			if !slices.Equal(v.Running, tt.wantRunning) {
				t.Errorf("Running = %q, want %q", v.Running, tt.wantRunning)
			}
			if v.Holds() != tt.holds {
				t.Errorf("Holds = %v, want %v", v.Holds(), tt.holds)
			}
		})
	}
}
