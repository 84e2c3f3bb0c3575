package watch

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestKillDeadline(t *testing.T) {
	termAt := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	sec := func(s int64) *int64 { return &s }
	pod := func(change func(p *corev1.Pod)) *corev1.Pod {
		p := newPod(corev1.RestartPolicyNever, regulars(ctr("proxy"), ctr("main")))
		p.Spec.TerminationGracePeriodSeconds = sec(60)
		if change != nil {
			change(p)
		}
		return p
	}
	deleted := func(grace int64, deadline time.Time) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			p.DeletionGracePeriodSeconds = sec(grace)
			p.DeletionTimestamp = &metav1.Time{Time: deadline}
		}
	}
	probes := func(liveness, startup *int64) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{TerminationGracePeriodSeconds: liveness}
			p.Spec.Containers[0].StartupProbe = &corev1.Probe{TerminationGracePeriodSeconds: startup}
		}
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		self      string
		wantAfter time.Duration // deadline − termAt
		wantGrace time.Duration
	}{
		{"no pod", nil, "proxy", 30 * time.Second, 30 * time.Second},
		{"pod's grace period", pod(nil), "proxy", 60 * time.Second, 60 * time.Second},
		{"no grace period in the pod", func() *corev1.Pod { p := pod(nil); p.Spec.TerminationGracePeriodSeconds = nil; return p }(), "proxy", 30 * time.Second, 30 * time.Second},
		{"deletion, signal at once", pod(deleted(20, termAt.Add(20*time.Second))), "proxy", 20 * time.Second, 20 * time.Second},
		{"deletion, signal after a 15 s preStop hook", pod(deleted(20, termAt.Add(5*time.Second))), "proxy", 5 * time.Second, 20 * time.Second},
		{"deletion, deadline already past", pod(deleted(20, termAt.Add(-time.Second))), "proxy", -time.Second, 20 * time.Second},
		{"deletion outranks a probe's grace period", pod(func(p *corev1.Pod) { probes(sec(5), nil)(p); deleted(20, termAt.Add(20*time.Second))(p) }), "proxy", 20 * time.Second, 20 * time.Second},
		{"liveness probe's grace period", pod(probes(sec(10), nil)), "proxy", 10 * time.Second, 10 * time.Second},
		{"startup probe's grace period", pod(probes(nil, sec(7))), "proxy", 7 * time.Second, 7 * time.Second},
		{"the shorter of the two probes'", pod(probes(sec(10), sec(7))), "proxy", 7 * time.Second, 7 * time.Second},
		{"a probe's longer grace period: the pod's may be the one", pod(probes(sec(90), nil)), "proxy", 60 * time.Second, 60 * time.Second},
		{"another container's probe", pod(probes(sec(10), nil)), "main", 60 * time.Second, 60 * time.Second},
		{"self unknown", pod(probes(sec(10), nil)), "", 60 * time.Second, 60 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			deadline, grace := KillDeadline(tt.pod, tt.self, termAt)
			if got := deadline.Sub(termAt); got != tt.wantAfter || grace != tt.wantGrace {
				t.Errorf("KillDeadline = termAt%+v, grace %v; want termAt%+v, grace %v", got, grace, tt.wantAfter, tt.wantGrace)
			}
		})
	}
}
