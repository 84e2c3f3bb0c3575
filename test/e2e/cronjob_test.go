package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const cronJob = "koordinator-example"

// TestCronJobCreateJobFrom applies deploy/rbac.yaml and deploy/cronjob-example.yaml as they are
// and runs the CronJob the way users try one out: kubectl create job --from=cronjob/... The Job
// completes, with the same coordination as the Job example.
func TestCronJobCreateJobFrom(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-cron-manual")
	applyFile(t, ns, "deploy/cronjob-example.yaml")

	created := time.Now()
	kubectl(t, "", "create", "job", "-n", ns, "--from=cronjob/"+cronJob, "manual-run")
	complete := waitJobComplete(t, ns, "manual-run", 2*time.Minute)
	t.Logf("Job created with kubectl complete %.1fs after its creation", complete.Sub(created).Seconds())

	job, err := client.BatchV1().Jobs(ns).Get(context.Background(), "manual-run", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(job); ref == nil || ref.Kind != "CronJob" || ref.Name != cronJob {
		t.Errorf("Job %s is not owned by CronJob %s: %+v", job.Name, cronJob, job.OwnerReferences)
	}
	checkExamplePod(t, ns, jobPod(t, ns, "manual-run"), created)
}

// TestCronJobScheduledRun applies deploy/cronjob-example.yaml as it is, then sets its schedule to
// every minute: the cronjob controller creates a Job on the next minute and that Job completes.
func TestCronJobScheduledRun(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-cron-scheduled")
	applyFile(t, ns, "deploy/cronjob-example.yaml")
	kubectl(t, "", "patch", "cronjob", cronJob, "-n", ns, "--type=merge", "-p", `{"spec":{"schedule":"* * * * *"}}`)
	patched := time.Now()
	t.Cleanup(func() { // no further runs while the namespace is being deleted
		_, _ = client.BatchV1().CronJobs(ns).Patch(context.Background(), cronJob, types.MergePatchType,
			[]byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{})
	})

	// The first Job the controller makes (kubectl create job --from is not involved here, but
	// skip any such Job all the same).
	var job string
	var complete time.Time
	waitFor(t, 150*time.Second, "a scheduled Job of the CronJob to complete", func() (bool, error) {
		jobs, err := client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, j := range jobs.Items {
			ref := metav1.GetControllerOf(&j)
			if ref == nil || ref.Kind != "CronJob" || ref.Name != cronJob || j.Annotations["cronjob.kubernetes.io/instantiate"] == "manual" {
				continue
			}
			if job == "" {
				job = j.Name
				t.Logf("the cronjob controller created Job %s %.1fs after the schedule was patched", j.Name, time.Since(patched).Seconds())
			}
			if j.Name != job {
				continue
			}
			if jobDone(t, &j) {
				complete = time.Now()
				return true, nil
			}
		}
		return false, nil
	})
	t.Logf("scheduled Job %s complete %.1fs after the schedule was patched", job, complete.Sub(patched).Seconds())
	checkExamplePod(t, ns, jobPod(t, ns, job), patched)

	// The controller records the run on the CronJob.
	waitFor(t, time.Minute, "the CronJob's lastSuccessfulTime", func() (bool, error) {
		cj, err := client.BatchV1().CronJobs(ns).Get(context.Background(), cronJob, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return cj.Status.LastScheduleTime != nil && cj.Status.LastSuccessfulTime != nil, nil
	})
}

// checkExamplePod checks a finished pod of the example template (proxy + main): from the API,
// the pod succeeded and every container exited 0 without restarts; from the logs, main started
// only once the proxy was Ready and the proxy was stopped stopDelay (1 s) after main exited.
func checkExamplePod(t *testing.T, ns string, pod *corev1.Pod, origin time.Time) {
	t.Helper()
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod %s phase %s, want Succeeded", pod.Name, pod.Status.Phase)
	}
	for _, name := range []string{"koordinator", "proxy", "main"} {
		expectTerminated(t, pod, name, 0, 0)
	}
	proxy, main := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "main")
	tl := newTimeline(origin)
	proxyReady := tl.add("proxy: proxy: ready", proxy.first(t, "proxy: ready"))
	depReady := tl.add("main: dependency ready (proxy)", main.first(t, "dependency ready", "dependency", "proxy"))
	mainStarted := tl.add("main: child started", main.first(t, "child started"))
	mainExited := tl.add("main: child exited", main.first(t, "child exited"))
	stopCond := tl.add("proxy: stop condition", proxy.first(t, "stop condition"))
	stopping := tl.add("proxy: stopping the child", proxy.first(t, "stopping the child"))
	tl.add("proxy: koordinator exits", proxy.first(t, "koordinator exits", "code", 0.0))
	tl.log(t)
	before(t, proxyReady, depReady, "the proxy was ready before main saw it Ready")
	before(t, depReady, mainStarted, "main's child started after its dependency was Ready")
	afterExit(t, mainExited, stopCond, "the proxy's stop condition held after main exited")
	if gap := stopping.Sub(stopCond); gap < 990*time.Millisecond {
		t.Errorf("the proxy was stopped %s after its stop condition held; want stopDelay (1s)", gap)
	}
	afterExit(t, mainExited.Add(time.Second), stopping, "the proxy was stopped stopDelay (1s) after main exited")
}
