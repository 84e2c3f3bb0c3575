// Package integration runs the real koordinator binary against a real kube-apiserver (built from
// pinned sources by hack/build-control-plane.sh) with a ServiceAccount token that has only what
// deploy/rbac.yaml grants. Pod status is written directly through the status subresource, the way
// a kubelet writes it, so these tests isolate the wrapper: informer list/watch with a field
// selector, RBAC, API outages. The process-based node in test/node covers whole pods.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"

	"github.com/koordinator-dev/koordinator/internal/watch"
	"github.com/koordinator-dev/koordinator/test/podstatus"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

const deadline = 60 * time.Second

var (
	cp       *testenv.ControlPlane
	client   *kubernetes.Clientset
	binary   string
	repoRoot string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if _, err := testenv.FindBinaries(""); err != nil {
		fmt.Printf("SKIP integration tests: %v\n", err)
		return 0
	}
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp(filepath.Join(repoRoot, ".cache"), "integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary = filepath.Join(tmp, "koordinator")
	build := exec.Command("go", "build", "-o", binary, "./cmd/koordinator")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building koordinator: %v\n%s", err, out)
		return 1
	}
	ctx := context.Background()
	if cp, err = testenv.Start(ctx, testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cp.Stop()
	if client, err = kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// --- a namespace with deploy/rbac.yaml, and a pod whose status the test writes ---------------

type fixture struct {
	t         *testing.T
	ns        string
	pod       string
	dir       string
	tokenFile string
}

// newFixture makes a namespace holding deploy/rbac.yaml (without the RoleBinding when bind is
// false) and a pod with containers proxy and main that no node runs: the test is its kubelet.
func newFixture(t *testing.T, bind bool) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{t: t, ns: strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), pod: "job-1", dir: t.TempDir()}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), f.ns, metav1.DeleteOptions{}) })
	f.applyRBAC(bind)

	never := int64(30)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: f.pod},
		Spec: corev1.PodSpec{
			NodeName:                      "no-such-node", // bound, so no scheduler or node touches it
			ServiceAccountName:            "koordinator",
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &never,
			Containers: []corev1.Container{
				{Name: "main", Image: "busybox", Command: []string{"/koordinator/koordinator", "sh"}},
				{Name: "proxy", Image: "busybox", Command: []string{"/koordinator/koordinator", "sh"}},
			},
		},
	}
	if _, err := client.CoreV1().Pods(f.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.setStatus(func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{waiting("main"), waiting("proxy")}
	})

	token, err := cp.CreateToken(ctx, f.ns, "koordinator", testenv.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.tokenFile = filepath.Join(f.dir, "token")
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: sa, user: {tokenFile: %q}}]
contexts: [{name: local, context: {cluster: local, user: sa}}]
current-context: local
`, cp.Host(), cp.CAFile(), f.tokenFile)
	if err := os.WriteFile(f.tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "kubeconfig"), []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) applyRBAC(bind bool) {
	f.t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "rbac.yaml"))
	if err != nil {
		f.t.Fatal(err)
	}
	ctx := context.Background()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			f.t.Fatal(err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil || meta.Kind == "" {
			continue
		}
		switch meta.Kind {
		case "ServiceAccount":
			var o corev1.ServiceAccount
			must(f.t, yaml.UnmarshalStrict(doc, &o))
			_, err = client.CoreV1().ServiceAccounts(f.ns).Create(ctx, &o, metav1.CreateOptions{})
		case "Role":
			var o rbacv1.Role
			must(f.t, yaml.UnmarshalStrict(doc, &o))
			_, err = client.RbacV1().Roles(f.ns).Create(ctx, &o, metav1.CreateOptions{})
		case "RoleBinding":
			if !bind {
				continue
			}
			var o rbacv1.RoleBinding
			must(f.t, yaml.UnmarshalStrict(doc, &o))
			for i := range o.Subjects {
				o.Subjects[i].Namespace = f.ns
			}
			_, err = client.RbacV1().RoleBindings(f.ns).Create(ctx, &o, metav1.CreateOptions{})
		}
		must(f.t, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waiting(name string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Image: "busybox", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
}

// setStatus writes the pod's status through the status subresource, as a kubelet does.
func (f *fixture) setStatus(change func(*corev1.PodStatus)) {
	f.t.Helper()
	ctx := context.Background()
	pod, err := client.CoreV1().Pods(f.ns).Get(ctx, f.pod, metav1.GetOptions{})
	must(f.t, err)
	change(&pod.Status)
	_, err = client.CoreV1().Pods(f.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	must(f.t, err)
}

func (f *fixture) setContainer(name string, change podstatus.Change) {
	f.t.Helper()
	f.setStatus(func(s *corev1.PodStatus) { podstatus.Set(s, name, change) })
}

// --- the wrapper as a real process ----------------------------------------------------------

type wrapper struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan struct{}
}

func (w *wrapper) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.Write(p)
}

func (w *wrapper) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stderr.String()
}

// run starts koordinator as container `name` of the fixture's pod, running `script` with sh.
func (f *fixture) run(name, spec, script string) *wrapper {
	f.t.Helper()
	w := &wrapper{t: f.t, done: make(chan struct{})}
	w.cmd = exec.Command(binary, "sh", "-c", script)
	w.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DIR=" + f.dir,
		"KUBECONFIG=" + filepath.Join(f.dir, "kubeconfig"),
		"KOORDINATOR_POD_NAME=" + f.pod,
		"KOORDINATOR_POD_NAMESPACE=" + f.ns,
		"KOORDINATOR_SPEC=" + spec,
	}
	w.cmd.Stdout = w
	w.cmd.Stderr = w
	must(f.t, w.cmd.Start())
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	f.t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.done
		if f.t.Failed() {
			f.t.Logf("%s's log:\n%s", name, w.log())
		}
	})
	return w
}

func (w *wrapper) exitCode() int {
	w.t.Helper()
	select {
	case <-w.done:
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(deadline):
		w.t.Fatalf("koordinator did not exit; log:\n%s", w.log())
		return -1
	}
}

func (w *wrapper) waitLog(substr string) {
	w.t.Helper()
	end := time.Now().Add(deadline)
	for !strings.Contains(w.log(), substr) {
		if time.Now().After(end) {
			w.t.Fatalf("no %q in the log within %v:\n%s", substr, deadline, w.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) exists(name string) bool {
	_, err := os.Stat(filepath.Join(f.dir, name))
	return err == nil
}

func (f *fixture) waitFile(name string) {
	f.t.Helper()
	end := time.Now().Add(deadline)
	for !f.exists(name) {
		if time.Now().After(end) {
			f.t.Fatalf("%s never appeared", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const sidecar = `echo started > "$DIR/$NAME-started"; trap 'echo term > "$DIR/$NAME-term"; exit 0' TERM; while :; do sleep 1 & wait $!; done`

func script(name string) string { return strings.ReplaceAll(sidecar, "$NAME", name) }

// --- scenarios ------------------------------------------------------------------------------

func TestStartAfterReadyStopAfterExit(t *testing.T) {
	f := newFixture(t, true)
	proxy := f.run("proxy", `{"name":"proxy","stopDeps":["main"],"stopDelay":"500ms"}`, script("proxy"))
	main := f.run("main", `{"name":"main","startDeps":["proxy"]}`, `echo started > "$DIR/main-started"; exit 0`)

	f.waitFile("proxy-started") // no start dependencies: starts once the pod was seen
	main.waitLog(`"msg":"waiting for start dependencies"`)
	f.setContainer("proxy", podstatus.Running(false))
	f.setContainer("proxy", podstatus.Running(true))
	f.waitFile("main-started")
	if code := main.exitCode(); code != 0 {
		t.Fatalf("main's koordinator exited %d", code)
	}
	if f.exists("proxy-term") {
		t.Fatal("proxy stopped before main's exit was written to the API")
	}
	f.setContainer("main", podstatus.Terminated(0))
	if code := proxy.exitCode(); code != 0 {
		t.Fatalf("proxy's koordinator exited %d, want 0", code)
	}
	if !f.exists("proxy-term") {
		t.Error("proxy's child never got its stop signal")
	}
	for _, want := range []string{`"msg":"dependency ready"`, `"dependency":"proxy"`, `"pod":"job-1"`, `"container":"main"`} {
		if !strings.Contains(main.log(), want) {
			t.Errorf("main's log lacks %s", want)
		}
	}
}

func TestRBACMissingIsOneActionableLine(t *testing.T) {
	f := newFixture(t, false)
	start := time.Now()
	w := f.run("main", `{"name":"main","startDeps":["proxy"]}`, script("main"))
	w.waitLog("API access forbidden")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the forbidden line took %v, want within 5 s", took)
	}
	line := ""
	for _, l := range strings.Split(w.log(), "\n") {
		if strings.Contains(l, "API access forbidden") {
			line = l
		}
	}
	for _, want := range []string{"ServiceAccount " + f.ns + "/koordinator", "verbs: [list, watch]", "namespace " + f.ns} {
		if !strings.Contains(line, want) {
			t.Errorf("forbidden line lacks %q:\n%s", want, line)
		}
	}
	must(t, w.cmd.Process.Signal(syscall.SIGTERM))
	if code := w.exitCode(); code != 143 {
		t.Errorf("exit %d after SIGTERM while waiting, want 143", code)
	}
	if f.exists("main-started") {
		t.Error("child started without access to the API")
	}
}

// TestAPIServerOutage stops the apiserver for 10 s while one wrapper waits for its start
// dependency and another runs its child: neither child is harmed, and the transitions written
// once the API is back are acted on.
func TestAPIServerOutage(t *testing.T) {
	f := newFixture(t, true)
	proxy := f.run("proxy", `{"name":"proxy","stopDeps":["main"]}`, script("proxy"))
	main := f.run("main", `{"name":"main","startDeps":["proxy"]}`, script("main"))
	f.waitFile("proxy-started")
	main.waitLog(`"msg":"waiting for start dependencies"`)

	must(t, cp.StopAPIServer())
	restart := sync.OnceValue(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return cp.StartAPIServer(ctx)
	})
	// A failure during the outage must not leave the tests after it without an API.
	t.Cleanup(func() {
		if err := restart(); err != nil {
			t.Errorf("restarting the API server: %v", err)
		}
	})
	outage := time.Now()
	for time.Since(outage) < 10*time.Second {
		select {
		case <-proxy.done:
			t.Fatalf("proxy's koordinator exited during the outage:\n%s", proxy.log())
		case <-main.done:
			t.Fatalf("main's koordinator exited during the outage:\n%s", main.log())
		case <-time.After(100 * time.Millisecond):
		}
	}
	must(t, restart())

	f.setContainer("proxy", podstatus.Running(true))
	f.waitFile("main-started")
	if f.exists("proxy-term") {
		t.Fatal("proxy stopped while main runs")
	}
	f.setContainer("main", podstatus.Terminated(0))
	if code := proxy.exitCode(); code != 0 {
		t.Fatalf("proxy exited %d, want 0", code)
	}
	if !strings.Contains(proxy.log(), "Kubernetes API unavailable") && !strings.Contains(main.log(), "Kubernetes API unavailable") {
		t.Error("no wrapper logged the outage")
	}
	must(t, main.cmd.Process.Signal(syscall.SIGTERM))
	if code := main.exitCode(); code != 0 {
		t.Errorf("main exited %d after SIGTERM, want its child's 0", code)
	}
}

// The wrapper's list and watch travel in protobuf: a new process decodes it without building
// JSON's reflection caches (see internal/watch.NewListWatch).
func TestListAndWatchInProtobuf(t *testing.T) {
	f := newFixture(t, true)
	cfg := cp.RESTConfig()
	var mu sync.Mutex
	seen := map[string]string{} // request query → response Content-Type
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil {
				mu.Lock()
				seen[req.URL.RawQuery] = resp.Header.Get("Content-Type")
				mu.Unlock()
			}
			return resp, err
		})
	})
	plain, err := watch.NewListWatch(cfg, f.ns, f.pod)
	if err != nil {
		t.Fatal(err)
	}
	lw, ctx := cache.ToListerWatcherWithContext(plain), context.Background()
	list, err := lw.ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, ok := list.(*corev1.PodList)
	if !ok || len(pods.Items) != 1 || pods.Items[0].Name != f.pod || len(pods.Items[0].Status.ContainerStatuses) != 2 {
		t.Fatalf("list: %#v", list)
	}
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: pods.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	f.setContainer("proxy", podstatus.Running(true))
	select {
	case ev := <-w.ResultChan():
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok || !slices.ContainsFunc(pod.Status.ContainerStatuses, func(s corev1.ContainerStatus) bool { return s.Name == "proxy" && s.Ready }) {
			t.Fatalf("watch event %s %#v, want the pod with proxy ready", ev.Type, ev.Object)
		}
	case <-time.After(deadline):
		t.Fatal("no watch event")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("responses %v, want one list and one watch", seen)
	}
	for query, ct := range seen {
		if ct != "application/vnd.kubernetes.protobuf" && ct != "application/vnd.kubernetes.protobuf;stream=watch" {
			t.Errorf("response to ?%s came as %q, want protobuf", query, ct)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
