package e2e

// Helpers shared by the scenarios: pod specs shaped like deploy/job-example.yaml, waits on the API,
// a recorder of every version of a pod, kubectl, and koordinator's log lines read back from the node.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

const (
	koordinatorImage = "ghcr.io/koordinator-dev/koordinator:latest"
	busyboxImage     = "busybox:1.37"
	// readyFile is what the scenarios' exec readiness probes look for.
	readyFile = "/tmp/ready"
)

// apiOutage keeps the scenario that stops the shared kube-apiserver apart from every other one:
// parallel scenarios hold it for reading (see parallel), the outage holds it for writing. The
// testing package already runs every sequential test before the parallel ones resume; this makes
// the separation hold whatever the flags.
var apiOutage sync.RWMutex

// parallel marks a scenario that may run alongside the others (never alongside the outage).
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	apiOutage.RLock()
	t.Cleanup(apiOutage.RUnlock)
}

// --- pod specs, as users write them ----------------------------------------------------------

// podSpec is the pod template of deploy/job-example.yaml around the given containers: the
// koordinator ServiceAccount, an init container that installs the binary from the project's image
// into the "koordinator" emptyDir, and the downward-API "podinfo" volume. Init containers given
// here (native sidecars) come after the installer.
func podSpec(restart corev1.RestartPolicy, grace int64, initContainers []corev1.Container, containers ...corev1.Container) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName:            "koordinator",
		RestartPolicy:                 restart,
		TerminationGracePeriodSeconds: &grace,
		InitContainers: append([]corev1.Container{{
			Name:         "koordinator",
			Image:        koordinatorImage,
			Args:         []string{"/koordinator"},
			VolumeMounts: []corev1.VolumeMount{{Name: "koordinator", MountPath: "/koordinator"}},
		}}, initContainers...),
		Containers: containers,
		Volumes: []corev1.Volume{
			{Name: "koordinator", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
					{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
				},
			}}},
		},
	}
}

// wrapped is a busybox container whose `sh -c script` runs behind koordinator with the given
// KOORDINATOR_SPEC (left unset when kspec is "").
func wrapped(name, kspec, script string) corev1.Container {
	c := corev1.Container{
		Name:    name,
		Image:   busyboxImage,
		Command: []string{"/koordinator/koordinator", "sh", "-c"},
		Args:    []string{script},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "koordinator", MountPath: "/koordinator"},
			{Name: "podinfo", MountPath: "/etc/podinfo"},
		},
	}
	if kspec != "" {
		c.Env = []corev1.EnvVar{{Name: "KOORDINATOR_SPEC", Value: kspec}}
	}
	return c
}

// plain is a busybox container running `sh -c script` without koordinator.
func plain(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: busyboxImage, Command: []string{"sh", "-c", script}}
}

// readyOnFile gives c an exec readiness probe that passes once readyFile exists (every second).
func readyOnFile(c corev1.Container) corev1.Container {
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"cat", readyFile}}},
		PeriodSeconds: 1,
	}
	return c
}

// nativeSidecar turns c into a restartable init container.
func nativeSidecar(c corev1.Container) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

// serveScript is a sidecar's command: it traps TERM (says "<name>: stopping", exits 0), says
// "<name>: starting", sleeps readyAfter seconds, touches readyFile, says "<name>: ready" and
// serves until stopped.
func serveScript(name string, readyAfter int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "trap 'echo %s: stopping; exit 0' TERM\n", name)
	fmt.Fprintf(&b, "echo %s: starting\n", name)
	if readyAfter > 0 {
		fmt.Fprintf(&b, "sleep %d\n", readyAfter)
	}
	fmt.Fprintf(&b, "touch %s\n", readyFile)
	fmt.Fprintf(&b, "echo %s: ready\n", name)
	b.WriteString("while true; do sleep 1 & wait $!; done\n")
	return b.String()
}

// workScript is a main container's command: "<name>: working", seconds of work, "<name>: done".
func workScript(name string, seconds int) string {
	return fmt.Sprintf("echo %s: working\nsleep %d\necho %s: done\n", name, seconds, name)
}

// --- API objects and waits ---------------------------------------------------------------------

func createPod(t *testing.T, ns, name string, spec corev1.PodSpec) {
	t.Helper()
	_, err := client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func createJob(t *testing.T, ns, name string, backoffLimit int32, spec corev1.PodSpec) {
	t.Helper()
	_, err := client.BatchV1().Jobs(ns).Create(context.Background(), &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoffLimit,
			Template:     corev1.PodTemplateSpec{Spec: spec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// waitJobComplete waits for the Job's Complete condition (the real Job controller's) and returns
// when it was seen; a Failed condition ends the test.
func waitJobComplete(t *testing.T, ns, job string, timeout time.Duration) time.Time {
	t.Helper()
	var complete time.Time
	waitFor(t, timeout, "Job "+job+" to complete", func() (bool, error) {
		j, err := client.BatchV1().Jobs(ns).Get(context.Background(), job, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if jobDone(t, j) {
			complete = time.Now()
			return true, nil
		}
		return false, nil
	})
	return complete
}

// jobDone reports whether the Job is Complete; a Failed Job ends the test, after dumping its pods.
func jobDone(t *testing.T, j *batchv1.Job) bool {
	t.Helper()
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true
		case batchv1.JobFailed:
			pods, _ := client.CoreV1().Pods(j.Namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + j.Name})
			for i := range pods.Items {
				dumpPod(t, &pods.Items[i])
			}
			t.Fatalf("Job %s failed: %s: %s", j.Name, c.Reason, c.Message)
		}
	}
	return false
}

// waitPod polls the pod until cond holds and returns it.
func waitPod(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(t, timeout, fmt.Sprintf("pod %s: %s", name, what), func() (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		pod = p
		return cond(p), nil
	})
	return pod
}

// waitPodGone waits until the pod is gone from the API.
func waitPodGone(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "pod "+name+" to be gone", func() (bool, error) {
		_, err := client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// ctrStatus finds a container's status among the pod's container and init container statuses.
func ctrStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// mustStatus is ctrStatus that ends the test when the status is missing.
func mustStatus(t *testing.T, p *corev1.Pod, name string) *corev1.ContainerStatus {
	t.Helper()
	cs := ctrStatus(p, name)
	if cs == nil {
		t.Fatalf("pod %s has no status for container %s", p.Name, name)
	}
	return cs
}

// expectTerminated checks a container's final state: terminated with the exit code, restarted
// restarts times.
func expectTerminated(t *testing.T, p *corev1.Pod, name string, code int32, restarts int32) *corev1.ContainerStateTerminated {
	t.Helper()
	cs := mustStatus(t, p, name)
	term := cs.State.Terminated
	if term == nil {
		t.Errorf("container %s: state %+v, want terminated with exit code %d", name, cs.State, code)
		return &corev1.ContainerStateTerminated{}
	}
	if term.ExitCode != code {
		t.Errorf("container %s exited %d (%s), want %d", name, term.ExitCode, term.Reason, code)
	}
	if cs.RestartCount != restarts {
		t.Errorf("container %s restartCount %d, want %d", name, cs.RestartCount, restarts)
	}
	return term
}

// recorder keeps every version of one pod the API sends, from before its creation on.
type recorder struct {
	mu   sync.Mutex
	pods []*corev1.Pod
}

// record watches the pod named name in ns (which need not exist yet) until the test ends.
func record(t *testing.T, ns, name string) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(),
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Error {
				r.mu.Lock()
				r.pods = append(r.pods, p)
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		w.Stop()
		<-done
	})
	return r
}

func (r *recorder) all() []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*corev1.Pod(nil), r.pods...)
}

func (r *recorder) last() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pods) == 0 {
		return nil
	}
	return r.pods[len(r.pods)-1]
}

// kubectl runs the control plane's kubectl against it, as a user would.
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(cp.Binaries().Kubectl, append([]string{"--kubeconfig", cp.Kubeconfig()}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String()
}

// coordinatedNamespace is a fresh namespace holding deploy/rbac.yaml as users apply it, whose
// pods are dumped if the test fails.
func coordinatedNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := newNamespace(t, prefix)
	dumpOnFailure(t, ns)
	applyFile(t, ns, "deploy/rbac.yaml")
	return ns
}

// dumpOnFailure logs the status and every container's log of each pod in ns when the test
// failed; pods already gone are dumped from their last recorded version when given.
func dumpOnFailure(t *testing.T, ns string, recorders ...*recorder) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		seen := map[string]bool{}
		pods, _ := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
		if pods != nil {
			for i := range pods.Items {
				seen[pods.Items[i].Name] = true
				dumpPod(t, &pods.Items[i])
			}
		}
		for _, r := range recorders {
			if p := r.last(); p != nil && !seen[p.Name] {
				seen[p.Name] = true
				dumpPod(t, p)
			}
		}
	})
}

// --- koordinator's log lines -------------------------------------------------------------------

// entry is one line of a container's log.
type entry struct {
	At     time.Time      // koordinator's own "time" for its JSON lines, else when the node received the line
	Recv   time.Time      // when the node received the line
	Msg    string         // a JSON line's msg, else the line's text
	Fields map[string]any // a JSON line's fields; nil for the child's own output
	Text   string
}

// ctrLog is every line of every instance of one container, in order.
type ctrLog struct {
	name    string
	entries []entry
}

func readLog(ns, pod, container string) ctrLog {
	l := ctrLog{name: container}
	for _, line := range nd.LogLines(ns, pod, container) {
		e := entry{At: line.Time, Recv: line.Time, Msg: line.Text, Text: line.Text}
		var fields map[string]any
		if strings.HasPrefix(line.Text, "{") && json.Unmarshal([]byte(line.Text), &fields) == nil {
			var k kline
			if json.Unmarshal([]byte(line.Text), &k) == nil && !k.Time.IsZero() {
				e.At, e.Msg, e.Fields = k.Time, k.Msg, fields
			}
		}
		l.entries = append(l.entries, e)
	}
	return l
}

// matching returns every line msg equals; kv are field/value pairs that must match as well
// (numbers as float64).
func (l ctrLog) matching(msg string, kv ...any) []entry {
	var out []entry
next:
	for _, e := range l.entries {
		if e.Msg != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if e.Fields == nil || e.Fields[kv[i].(string)] != kv[i+1] {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func (l ctrLog) has(msg string, kv ...any) bool { return len(l.matching(msg, kv...)) > 0 }

// first returns the time of the first line matching msg (and kv), ending the test without one.
func (l ctrLog) first(t *testing.T, msg string, kv ...any) time.Time {
	t.Helper()
	m := l.matching(msg, kv...)
	if len(m) == 0 {
		t.Fatalf("%s's log has no %q line %v", l.name, msg, kv)
	}
	return m[0].At
}

// containing returns the lines whose raw text contains s.
func (l ctrLog) containing(s string) []entry {
	var out []entry
	for _, e := range l.entries {
		if strings.Contains(e.Text, s) {
			out = append(out, e)
		}
	}
	return out
}

// waitLog waits until a container's log has a line matching msg (and kv) and returns it.
func waitLog(t *testing.T, ns, pod, container string, timeout time.Duration, msg string, kv ...any) entry {
	t.Helper()
	var found entry
	waitFor(t, timeout, fmt.Sprintf("%s's log line %q", container, msg), func() (bool, error) {
		m := readLog(ns, pod, container).matching(msg, kv...)
		if len(m) == 0 {
			return false, nil
		}
		found = m[0]
		return true, nil
	})
	return found
}

// waitLine waits until a container's log has a line for which match holds and returns it.
func waitLine(t *testing.T, ns, pod, container string, timeout time.Duration, what string, match func(entry) bool) entry {
	t.Helper()
	var found entry
	waitFor(t, timeout, fmt.Sprintf("%s's log: %s", container, what), func() (bool, error) {
		for _, e := range readLog(ns, pod, container).entries {
			if match(e) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// timeline collects named moments of a scenario and logs them in order.
type timeline struct {
	origin time.Time
	points []point
}

type point struct {
	what string
	at   time.Time
}

func newTimeline(origin time.Time) *timeline { return &timeline{origin: origin} }

func (tl *timeline) add(what string, at time.Time) time.Time {
	tl.points = append(tl.points, point{what, at})
	return at
}

func (tl *timeline) log(t *testing.T) {
	t.Helper()
	pts := append([]point(nil), tl.points...)
	sort.SliceStable(pts, func(i, j int) bool { return pts[i].at.Before(pts[j].at) })
	var b strings.Builder
	for _, p := range pts {
		fmt.Fprintf(&b, "\n  %8.3fs  %s", p.at.Sub(tl.origin).Seconds(), p.what)
	}
	t.Logf("timeline:%s", b.String())
}

// before checks that a happened before b.
func before(t *testing.T, a, b time.Time, what string) {
	t.Helper()
	if !a.Before(b) {
		t.Errorf("%s: %s is not before %s", what, a.Format(time.StampMicro), b.Format(time.StampMicro))
	}
}

// logSkew bounds how much earlier than a wrapper's "child exited" line another wrapper may log its
// reaction to that exit: the exit goes out on the pod-local channel before it is logged.
const logSkew = 100 * time.Millisecond

// captureLag bounds how much later than it was written a child's own output line is stamped: the
// node (the process node's log writer, containerd's shim on the real node) stamps a line when it
// reads it from the pipe; koordinator stamps its lines itself. 172 ms was seen on the process
// node with both e2e passes, a demo and a benchmark sharing 2 cores.
const captureLag = 500 * time.Millisecond

// afterExit checks that reaction, another wrapper acting on a dependency's exit, did not come
// before that exit: not earlier than the dependency's "child exited" line minus logSkew.
func afterExit(t *testing.T, exited, reaction time.Time, what string) {
	t.Helper()
	if reaction.Before(exited.Add(-logSkew)) {
		t.Errorf("%s: %s is %s before the exit was logged (%s)", what, reaction.Format(time.StampMicro),
			exited.Sub(reaction), exited.Format(time.StampMicro))
	}
}
