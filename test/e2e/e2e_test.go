// Package e2e runs koordinator's end-to-end scenarios: the real binary, built
// from this tree, in pods of a real local control plane (test/testenv), on two
// nodes one after the other: the process node (test/node), which runs
// containers as processes without root, and the real node (test/kubelet), a
// kubelet with containerd and runc, which needs root and is skipped with the
// reason without it. -node=process|kubelet|both picks. The manifests are the
// ones users copy from deploy/.
//
// The whole package is skipped when the control-plane binaries are not built
// (make controlplane).
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/koordinator-dev/koordinator/test/kubelet"
	"github.com/koordinator-dev/koordinator/test/node"
	"github.com/koordinator-dev/koordinator/test/proctest"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

// Shared by every scenario; each scenario uses its own namespace.
var (
	repoRoot string
	cp       *testenv.ControlPlane
	nd       testNode
	client   kubernetes.Interface
	// koordinatorBinary is the linux/amd64 binary built from this tree for the node.
	koordinatorBinary string
	// onRealNode: this pass runs on the real kubelet + containerd + runc (test/kubelet), not on
	// the process node (test/node).
	onRealNode bool
)

// testNode is what the scenarios need of a node, either one: every line a container wrote.
type testNode interface {
	Logs(namespace, pod, container string) string
	LogLines(namespace, pod, container string) []node.LogLine
}

// containerIDScheme is how the node names its runtime in container IDs.
func containerIDScheme() string {
	if onRealNode {
		return "containerd://"
	}
	return "local://"
}

var nodeFlag = flag.String("node", "both",
	"the node the scenarios run on: process (test/node, no root), kubelet (test/kubelet: kubelet + containerd + runc, root) or both, one pass after the other")

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if _, err := testenv.FindBinaries(""); err != nil {
		if errors.Is(err, testenv.ErrNotBuilt) {
			fmt.Printf("e2e: SKIP: the local control plane is not built (%v).\n"+
				"e2e: build it once with `make controlplane` (~11 min on 2 cores), then rerun.\n", err)
			return 0
		}
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	logf := func(string, ...any) {}
	if testing.Verbose() {
		logger := log.New(os.Stderr, "", log.Ltime|log.Lmicroseconds)
		logf = func(format string, args ...any) { logger.Printf(format, args...) }
	}
	if kubelet.Inside() {
		onRealNode = true
		return runPass(m, logf)
	}
	switch *nodeFlag {
	case "process", "kubelet", "both":
	default:
		fmt.Fprintf(os.Stderr, "e2e: -node=%s: want process, kubelet or both\n", *nodeFlag)
		return 2
	}
	code := 0
	if *nodeFlag != "kubelet" {
		code = runPass(m, logf)
	}
	if *nodeFlag != "process" {
		if c := runRealNodePass(logf); c != 0 {
			code = c
		}
	}
	return code
}

// runRealNodePass runs every scenario again on the real node, in its own namespaces (the test
// binary re-executed as their PID 1), or says plainly why it cannot.
func runRealNodePass(logf func(string, ...any)) int {
	if why := kubelet.Unavailable(); why != "" {
		fmt.Printf("e2e: SKIP the real-node pass: %s\n", why)
		return 0
	}
	fmt.Printf("e2e: the real-node pass: every scenario on kubelet %s + containerd + runc\n", testenv.KubernetesVersion)
	code, err := kubelet.RunInside(os.Stdout, os.Stderr, logf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: the real-node pass: %v\n", err)
		return 1
	}
	return code
}

// runPass starts the control plane and a node, the real one when inside its namespaces, runs
// every scenario, and stops both.
func runPass(m *testing.M, logf func(string, ...any)) int {
	if onRealNode {
		if err := kubelet.Enter(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: the real node's namespaces: %v\n", err)
			return 1
		}
	}
	cache := filepath.Join(repoRoot, ".cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	tmp, err := os.MkdirTemp(cache, "e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	begin := time.Now()
	binary := filepath.Join(tmp, "koordinator")
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "./cmd/koordinator")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building koordinator: %v\n%s", err, out)
		return 1
	}
	koordinatorBinary = binary
	logf("e2e: koordinator built in %s", time.Since(begin).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if cp, err = testenv.Start(ctx, testenv.Options{Logf: logf}); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: control plane: %v\n", err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stopping the control plane: %v\n", err)
		}
	}()
	if client, err = kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if onRealNode {
		rn, err := kubelet.Start(ctx, cp, kubelet.Options{
			KoordinatorBinary: binary,
			// The manifests' image, TestKustomizeExample's overlay and the README's kind block
			// (TestReadmeInstall): the process node maps any repository named koordinator.
			KoordinatorImages: []string{koordinatorImage, kustomizeImage, "koordinator:v0.1.0"},
			BusyboxImages:     []string{busyboxImage},
			Logf:              logf,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: the real node: %v\n", err)
			return 1
		}
		nd = rn
		logf("e2e: control plane and real node up in %s", time.Since(begin).Round(time.Millisecond))
		code := m.Run()
		rn.Stop()
		return code
	}
	pn, err := node.Start(ctx, cp, node.Options{
		KoordinatorBinary: binary,
		WorkDir:           filepath.Join(tmp, "node"),
		// The kubelet's 10 s base scaled down tenfold: restarts in the
		// scenarios take 0 s, 1 s, 2 s, ...
		CrashLoopBase: time.Second,
		Logf:          logf,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: node: %v\n", err)
		return 1
	}
	nd = pn
	logf("e2e: control plane and node up in %s", time.Since(begin).Round(time.Millisecond))

	code := m.Run()

	pids := pn.PIDs()
	pn.Stop()
	// Nothing the node started may outlive it.
	var alive []string
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil && !zombie(pid) {
			alive = append(alive, fmt.Sprint(pid))
		}
	}
	for _, pid := range pn.Leftovers() {
		alive = append(alive, fmt.Sprint(pid))
	}
	if len(alive) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: processes started by the node still run after Stop: %s\n", strings.Join(alive, " "))
		code = 1
	} else {
		logf("e2e: node stopped; none of its %d container processes is left", len(pids))
	}
	return code
}

func zombie(pid int) bool {
	st, ok := proctest.Read(pid)
	return !ok || st.Exited()
}

// newNamespace makes a fresh namespace for one scenario, deleted at its end.
func newNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ctx := context.Background()
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// applyFile creates every object of a manifest from deploy/ as it is, in
// namespace ns (testenv.Apply).
func applyFile(t *testing.T, ns, rel string) {
	t.Helper()
	if err := testenv.Apply(context.Background(), client, ns, filepath.Join(repoRoot, rel)); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 200 ms until it holds, fails, or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// jobPod returns the (single) pod of a Job.
func jobPod(t *testing.T, ns, job string) *corev1.Pod {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("job %s has %d pods, want 1", job, len(pods.Items))
	}
	return &pods.Items[0]
}

// dumpPod logs a pod's status and every container's log, for failures.
func dumpPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	st, _ := json.MarshalIndent(pod.Status, "", "  ")
	t.Logf("pod %s/%s status:\n%s", pod.Namespace, pod.Name, st)
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		t.Logf("--- log of %s ---\n%s", c.Name, nd.Logs(pod.Namespace, pod.Name, c.Name))
	}
}

// kline is one of koordinator's JSON log lines.
type kline struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
}

// findLine returns the first log line of a container for which match holds:
// koordinator's JSON lines are matched on msg and timed by their own
// timestamp; other lines on their text, timed when the node received them.
func findLine(lines []node.LogLine, match func(msg string, fields map[string]any) bool) (time.Time, map[string]any, bool) {
	for _, l := range lines {
		var fields map[string]any
		if strings.HasPrefix(l.Text, "{") && json.Unmarshal([]byte(l.Text), &fields) == nil {
			var k kline
			_ = json.Unmarshal([]byte(l.Text), &k)
			if match(k.Msg, fields) {
				return k.Time, fields, true
			}
			continue
		}
		if match(l.Text, nil) {
			return l.Time, nil, true
		}
	}
	return time.Time{}, nil, false
}

func msgIs(want string) func(string, map[string]any) bool {
	return func(msg string, _ map[string]any) bool { return msg == want }
}
