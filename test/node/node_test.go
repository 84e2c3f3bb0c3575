package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// The tests against a control plane share one; they are skipped when it is
// not built. TestInitStep* need none.
var (
	testCP     *testenv.ControlPlane
	testNode   *Node
	testClient kubernetes.Interface
	skipReason string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if _, err := testenv.FindBinaries(""); err != nil {
		if !errors.Is(err, testenv.ErrNotBuilt) {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		skipReason = fmt.Sprintf("control plane not built (make controlplane): %v", err)
		return m.Run()
	}
	logf := func(string, ...any) {}
	if testing.Verbose() {
		l := log.New(os.Stderr, "", log.Ltime|log.Lmicroseconds)
		logf = func(f string, a ...any) { l.Printf(f, a...) }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if testCP, err = testenv.Start(ctx, testenv.Options{Logf: logf}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer testCP.Stop()
	if testClient, err = kubernetes.NewForConfig(testCP.RESTConfig()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// A stand-in for the freshly built binary, so the project's image (and
	// image volumes of it) map without building koordinator.
	binDir, err := standInBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	// CrashLoopBase 200 ms: the kubelet's back-off ÷ 50.
	if testNode, err = Start(ctx, testCP, Options{
		CrashLoopBase:     200 * time.Millisecond,
		KoordinatorBinary: filepath.Join(binDir, "koordinator"),
		Logf:              logf,
	}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	testNode.Stop()
	if left := testNode.Leftovers(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left after Stop: %v\n", left)
		code = 1
	}
	return code
}

// standInBinary writes a script that stands in for koordinator into a fresh
// folder under the repository's .cache/node and returns the folder.
func standInBinary() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(root, ".cache", "node"), 0o755); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(filepath.Join(root, ".cache", "node"), "bin-")
	if err != nil {
		return "", err
	}
	script := "#!/bin/sh\necho \"stand-in koordinator: $*\"\n"
	if err := os.WriteFile(filepath.Join(dir, "koordinator"), []byte(script), 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func testNamespace(t *testing.T) string {
	t.Helper()
	ns, err := testClient.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testClient.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	// The ServiceAccount admission plugin needs the namespace's default SA.
	waitUntil(t, time.Minute, "the default ServiceAccount", func() bool {
		_, err := testClient.CoreV1().ServiceAccounts(ns.Name).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
	return ns.Name
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recorder keeps every version of a pod the API sends.
type recorder struct {
	mu   sync.Mutex
	pods []*corev1.Pod
	gone bool
}

func record(t *testing.T, ns, name string) *recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w, err := testClient.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			r.mu.Lock()
			r.pods = append(r.pods, p)
			if ev.Type == "DELETED" {
				r.gone = true
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) latest() (*corev1.Pod, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pods) == 0 {
		return nil, r.gone
	}
	return r.pods[len(r.pods)-1], r.gone
}

func (r *recorder) all() []*corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*corev1.Pod(nil), r.pods...)
}

func status(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func createPod(t *testing.T, ns string, spec corev1.PodSpec) string {
	t.Helper()
	if spec.TerminationGracePeriodSeconds == nil {
		g := int64(10)
		spec.TerminationGracePeriodSeconds = &g
	}
	p, err := testClient.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Name
}

func busybox(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox:1.37", Command: []string{"sh", "-c", script}}
}

// TestRestartRules: the pod's OnFailure restarts a failing container (with
// lastState and restartCount), a container-level rule restarts exit 42 under
// its own policy Never; the pod then succeeds.
func TestRestartRules(t *testing.T) {
	needCluster(t)
	ns := testNamespace(t)
	never := corev1.ContainerRestartPolicyNever
	ruled := busybox("ruled", `if [ ! -e /data/ruled ]; then touch /data/ruled; exit 42; fi; exit 0`)
	ruled.RestartPolicy = &never
	ruled.RestartPolicyRules = []corev1.ContainerRestartRule{{
		Action:    corev1.ContainerRestartRuleActionRestart,
		ExitCodes: &corev1.ContainerRestartRuleOnExitCodes{Operator: corev1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}},
	}}
	spec := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyOnFailure,
		Containers: []corev1.Container{
			busybox("flaky", `echo run; if [ ! -e /data/flaky ]; then touch /data/flaky; exit 1; fi; exit 0`),
			ruled,
		},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
	for i := range spec.Containers {
		spec.Containers[i].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	}
	rec := record(t, ns, "p")
	name := createPod(t, ns, spec)
	waitUntil(t, 2*time.Minute, "phase Succeeded", func() bool {
		p, _ := rec.latest()
		return p != nil && p.Status.Phase == corev1.PodSucceeded
	})
	p, _ := rec.latest()
	for _, c := range []struct {
		name string
		code int32
	}{{"flaky", 1}, {"ruled", 42}} {
		st := status(p, c.name)
		if st == nil || st.RestartCount != 1 || st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 ||
			st.LastTerminationState.Terminated == nil || st.LastTerminationState.Terminated.ExitCode != c.code ||
			st.LastTerminationState.Terminated.Reason != "Error" {
			t.Errorf("%s: status %+v", c.name, st)
		}
	}
	if got := testNode.Logs(ns, name, "flaky"); got != "run\nrun\n" {
		t.Errorf("flaky's logs %q, want two runs", got)
	}
	if p.Status.ContainerStatuses[0].Name != "flaky" {
		t.Errorf("containerStatuses not sorted by name")
	}
}

// TestSidecarAndDeletion: a native sidecar gated by its startup probe, ready
// by an httpGet probe; a main ready by tcpSocket. On deletion the node writes
// the status once, then no container state until everything stopped, stops
// main before the sidecar, and deletes the pod.
func TestSidecarAndDeletion(t *testing.T) {
	needCluster(t)
	ns := testNamespace(t)
	httpPort, tcpPort := freePort(t), freePort(t)
	always := corev1.ContainerRestartPolicyAlways
	sidecar := busybox("sidecar", fmt.Sprintf(`trap 'echo sidecar: term; exit 0' TERM
mkdir -p /tmp/www && echo ok > /tmp/www/index.html
sleep 1; touch /tmp/up; echo sidecar: up
httpd -f -p 127.0.0.1:%d -h /tmp/www & 
while true; do sleep 0.1; done`, httpPort))
	sidecar.RestartPolicy = &always
	sidecar.StartupProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/tmp/up"}}},
		PeriodSeconds: 1,
	}
	sidecar.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intOrStr(httpPort)}},
		PeriodSeconds: 1,
	}
	main := busybox("main", fmt.Sprintf(`trap 'echo main: term; sleep 1; echo main: bye; exit 0' TERM
echo main: up
httpd -f -p 127.0.0.1:%d &
while true; do sleep 0.1; done`, tcpPort))
	main.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intOrStr(tcpPort)}},
		PeriodSeconds: 1,
	}
	rec := record(t, ns, "p")
	name := createPod(t, ns, corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{sidecar},
		Containers:     []corev1.Container{main},
	})
	waitUntil(t, 2*time.Minute, "both containers ready", func() bool {
		p, _ := rec.latest()
		if p == nil {
			return false
		}
		s, m := status(p, "sidecar"), status(p, "main")
		return s != nil && m != nil && s.Ready && m.Ready && p.Status.Phase == corev1.PodRunning
	})
	up, _ := findText(testNode.LogLines(ns, name, "sidecar"), "sidecar: up")
	mainUp, _ := findText(testNode.LogLines(ns, name, "main"), "main: up")
	if up.IsZero() || mainUp.IsZero() || !up.Before(mainUp) {
		t.Errorf("main started (%v) before the sidecar's startup probe could pass (%v)", mainUp, up)
	}

	deleteAt := time.Now()
	if err := testClient.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "the pod to be deleted", func() bool { _, gone := rec.latest(); return gone })
	t.Logf("deleted in %s", time.Since(deleteAt).Round(time.Millisecond))

	// Every version after the deletion timestamp: container states frozen
	// until the final one, where everything is terminated.
	var after []*corev1.Pod
	for _, p := range rec.all() {
		if p.DeletionTimestamp != nil {
			after = append(after, p)
		}
	}
	if len(after) < 2 {
		t.Fatalf("only %d pod versions after deletion", len(after))
	}
	final := after[len(after)-1]
	for _, c := range []string{"sidecar", "main"} {
		if st := status(final, c); st == nil || st.State.Terminated == nil {
			t.Errorf("final status of %s: %+v", c, st)
		}
	}
	var firstFinal int
	for i, p := range after {
		if st := status(p, "main"); st != nil && st.State.Terminated != nil {
			firstFinal = i
			break
		}
	}
	for _, p := range after[:firstFinal] {
		for _, c := range []string{"sidecar", "main"} {
			if st := status(p, c); st == nil || st.State.Running == nil {
				t.Errorf("during termination %s's state changed before the final write: %+v", c, st)
			}
		}
	}
	if st := status(after[firstFinal], "sidecar"); st == nil || st.State.Terminated == nil {
		t.Errorf("main's exit became visible before the sidecar had stopped")
	}
	mainBye, _ := findText(testNode.LogLines(ns, name, "main"), "main: bye")
	sideTerm, _ := findText(testNode.LogLines(ns, name, "sidecar"), "sidecar: term")
	if mainBye.IsZero() || sideTerm.IsZero() || !mainBye.Before(sideTerm) {
		t.Errorf("the sidecar got SIGTERM (%v) before main had exited (%v)", sideTerm, mainBye)
	}
}

// TestImageNotMapped: an image the node cannot map is a clear waiting reason.
func TestImageNotMapped(t *testing.T) {
	needCluster(t)
	ns := testNamespace(t)
	rec := record(t, ns, "p")
	createPod(t, ns, corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}})
	waitUntil(t, time.Minute, "ImagePullBackOff", func() bool {
		p, _ := rec.latest()
		st := (*corev1.ContainerStatus)(nil)
		if p != nil {
			st = status(p, "web")
		}
		return st != nil && st.State.Waiting != nil && st.State.Waiting.Reason == "ImagePullBackOff" &&
			strings.Contains(st.State.Waiting.Message, `"nginx:1.27"`)
	})
	p, _ := rec.latest()
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending", p.Status.Phase)
	}
}

// TestImageVolume: an image volume of the project's image shows the freshly
// built binary at bin/koordinator, read-only for real (a write fails with
// EROFS, the node's copy is untouched), also through subPath; an image volume
// of any other image is the mounting container's ErrImagePull, and a subPath
// the image lacks its CreateContainerConfigError.
func TestImageVolume(t *testing.T) {
	needCluster(t)
	imageVolume := func(name, ref string) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{
			Reference: ref, PullPolicy: corev1.PullIfNotPresent,
		}}}
	}

	ns := testNamespace(t)
	main := busybox("main", `/koordinator/bin/koordinator whole
/kbin/koordinator sub
ls /koordinator | sed 's/^/ls: /'
for f in /koordinator/x /koordinator/bin/koordinator /kbin/x; do
  if echo x >> $f; then echo "$f: writable"; else echo "$f: write failed"; fi
done
grep -E ' /(koordinator|kbin) ' /proc/self/mountinfo | awk '{print "mount: " $5 " " $6}'`)
	main.VolumeMounts = []corev1.VolumeMount{
		{Name: "koordinator", MountPath: "/koordinator"},
		{Name: "koordinator", MountPath: "/kbin", SubPath: "bin"},
	}
	rec := record(t, ns, "p")
	name := createPod(t, ns, corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers:    []corev1.Container{main},
		Volumes:       []corev1.Volume{imageVolume("koordinator", "ghcr.io/koordinator-dev/koordinator:latest")},
	})
	waitUntil(t, 2*time.Minute, "phase Succeeded", func() bool {
		p, _ := rec.latest()
		return p != nil && p.Status.Phase == corev1.PodSucceeded
	})
	logs := testNode.Logs(ns, name, "main")
	t.Logf("main's output:\n%s", logs)
	for _, want := range []string{
		"stand-in koordinator: whole\n", "stand-in koordinator: sub\n", "ls: bin\n",
		"/koordinator/x: write failed\n", "/koordinator/bin/koordinator: write failed\n", "/kbin/x: write failed\n",
		"mount: /koordinator ro,", "mount: /kbin ro,",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("main's output lacks %q", want)
		}
	}
	if n := strings.Count(logs, "Read-only file system"); n != 3 {
		t.Errorf("%d writes failed with EROFS, want 3", n)
	}
	dir, err := testNode.imageVolumeDir("koordinator:dev")
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "bin" {
		t.Errorf("the image volume's folder holds %v, want only bin", entries)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bin", "koordinator")); err != nil || !strings.HasPrefix(string(b), "#!/bin/sh\n") || strings.Contains(string(b), "x\n") {
		t.Errorf("the node's copy of the binary changed: %q, %v", b, err)
	}

	ns = testNamespace(t)
	badRef := busybox("bad-ref", "true")
	badRef.VolumeMounts = []corev1.VolumeMount{{Name: "web", MountPath: "/web"}}
	badSub := busybox("bad-sub", "true")
	badSub.VolumeMounts = []corev1.VolumeMount{{Name: "koordinator", MountPath: "/k", SubPath: "no-such-folder"}}
	rec = record(t, ns, "p")
	createPod(t, ns, corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		Containers:    []corev1.Container{badRef, badSub},
		Volumes: []corev1.Volume{
			imageVolume("web", "nginx:1.27"),
			imageVolume("koordinator", "ghcr.io/koordinator-dev/koordinator:latest"),
		},
	})
	waitUntil(t, time.Minute, "ImagePullBackOff and CreateContainerConfigError", func() bool {
		p, _ := rec.latest()
		if p == nil {
			return false
		}
		ref, sub := status(p, "bad-ref"), status(p, "bad-sub")
		return ref != nil && ref.State.Waiting != nil && ref.State.Waiting.Reason == "ImagePullBackOff" &&
			strings.Contains(ref.State.Waiting.Message, `image volume's image "nginx:1.27"`) &&
			sub != nil && sub.State.Waiting != nil && sub.State.Waiting.Reason == "CreateContainerConfigError" &&
			strings.Contains(sub.State.Waiting.Message, `subPath "no-such-folder" does not exist`)
	})
	p, _ := rec.latest()
	if p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s, want Pending", p.Status.Phase)
	}
}

func findText(lines []LogLine, text string) (time.Time, bool) {
	for _, l := range lines {
		if l.Text == text {
			return l.Time, true
		}
	}
	return time.Time{}, false
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func intOrStr(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }
