package watch

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A rehearsal decodes what it encoded: the pod comes back whole through the stream watcher and
// the pod codec, as a real watch event would.
func TestRehearsalRoundTrip(t *testing.T) {
	pod := newPod(corev1.RestartPolicyNever, regulars(ctr("main"), ctr("proxy")),
		statuses(running("main", true), terminated("proxy", 0, "Completed")))
	pod.Name, pod.Namespace, pod.ResourceVersion = "job-1", "default", "42"
	pod.Labels = map[string]string{"app": "x"}
	at := metav1.NewTime(time.Unix(1700000000, 0)) // the API keeps whole seconds
	pod.Status.StartTime = &at
	pod.Status.ContainerStatuses[0].State.Running.StartedAt = at
	r, err := NewRehearsal(pod)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.decode()
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, pod) {
		t.Errorf("decoded pod differs:\ngot  %+v\nwant %+v", got, pod)
	}
	if err := r.Run([]string{"main"}, []string{"proxy"}); err != nil {
		t.Error(err)
	}
}
