package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// exampleSucceeded waits for the example Job to complete and checks that every container of its
// pod exited 0; it returns the pod.
func exampleSucceeded(t *testing.T, ns, job string, containers int) *corev1.Pod {
	t.Helper()
	waitJobComplete(t, ns, job, 2*time.Minute)
	pod := jobPod(t, ns, job)
	t.Cleanup(func() {
		if t.Failed() {
			dumpPod(t, pod)
		}
	})
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod phase %s, want Succeeded", pod.Status.Phase)
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	if len(statuses) != containers {
		t.Fatalf("%d container statuses, want %d", len(statuses), containers)
	}
	for _, cs := range statuses {
		expectTerminated(t, pod, cs.Name, 0, 0)
	}
	return pod
}

// TestMeshExample applies deploy/job-mesh-example.yaml as it is: main waits for the injected
// stand-in proxy (an optional start dependency), and the stopper asks the proxy to quit (its
// stop action) once main has exited, so the Job completes.
func TestMeshExample(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-mesh")
	applyFile(t, ns, "deploy/rbac.yaml")
	applyFile(t, ns, "deploy/job-mesh-example.yaml")
	pod := exampleSucceeded(t, ns, "koordinator-mesh-example", 4)

	proxy, main, stopper := readLog(ns, pod.Name, "istio-proxy"), readLog(ns, pod.Name, "main"), readLog(ns, pod.Name, "mesh-stopper")
	serving := proxy.first(t, "istio-proxy: serving")
	mainReady := main.first(t, "dependency ready", "dependency", "istio-proxy")
	mainStarted := main.first(t, "child started")
	mainExited := main.first(t, "child exited")
	stopperWaits := stopper.first(t, "stopper: no child; waiting for the stop dependencies")
	acted := stopper.first(t, "stop action done")
	quit := proxy.first(t, "istio-proxy: asked to quit")
	stopper.first(t, "koordinator exits", "code", float64(0))

	// The proxy's own line carries the node's capture time (see captureLag).
	if mainReady.Before(serving.Add(-captureLag)) {
		t.Errorf("main saw istio-proxy Ready after it served: it did %s before", serving.Sub(mainReady))
	}
	before(t, mainReady, mainStarted, "main's child started after istio-proxy was Ready")
	before(t, stopperWaits, mainExited, "the stopper waited while main ran")
	before(t, mainExited, acted, "the stop action came after main exited")
	if quit.Before(mainExited) {
		t.Errorf("istio-proxy quit %s before main exited", mainExited.Sub(quit))
	}
}

// TestNoRBACExample applies deploy/job-no-rbac-example.yaml as it is, in a namespace without
// deploy/rbac.yaml and with no token mounted: main starts once the proxy answers HTTP, the proxy
// stops after main's exit seen in its state file, and the Job completes.
func TestNoRBACExample(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-norbac")
	applyFile(t, ns, "deploy/job-no-rbac-example.yaml")
	pod := exampleSucceeded(t, ns, "koordinator-no-rbac-example", 3)

	proxy, main := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "main")
	serving := proxy.first(t, "proxy: serving")
	mainReady := main.first(t, "dependency ready", "dependency", "http http://127.0.0.1:18080/")
	mainStarted := main.first(t, "child started")
	mainExited := main.first(t, "child exited")
	stop := proxy.matching("stop dependencies exited")
	if len(stop) != 1 || stop[0].Fields["fromStateFiles"] == nil {
		t.Fatalf("want the proxy stopped by main's state file; proxy log: %+v", proxy.entries)
	}
	stopping := proxy.first(t, "stopping the child")

	// The proxy's own line carries the node's capture time (see captureLag).
	if mainReady.Before(serving.Add(-captureLag)) {
		t.Errorf("main saw the proxy answer after it served: it did %s before", serving.Sub(mainReady))
	}
	before(t, mainReady, mainStarted, "main's child started after the proxy answered")
	before(t, mainExited, stop[0].At, "the proxy's stop condition held after main exited")
	if gap := stopping.Sub(mainExited); gap < time.Second {
		t.Errorf("the proxy was stopped %s after main exited; want at least stopDelay (1s)", gap)
	}
	for _, l := range []ctrLog{proxy, main} {
		if m := l.containing(`"pod":`); len(m) > 0 {
			t.Errorf("%s logged with a pod identity, as if it had used the API: %s", l.name, m[0].Text)
		}
	}
}

// TestImageVolumeExample applies deploy/rbac.yaml and deploy/job-image-volume-example.yaml as
// they are: koordinator runs from a read-only image volume of its image (no init container), and
// the pod-local channel lives in the KOORDINATOR_STATE_DIR emptyDir. main starts once the proxy
// is Ready; the proxy is stopped stopDelay after main's exit, which it read from main's state
// file; the Job completes. Nothing needed to write next to the read-only binary.
func TestImageVolumeExample(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-imagevol")
	applyFile(t, ns, "deploy/rbac.yaml")
	applyFile(t, ns, "deploy/job-image-volume-example.yaml")
	pod := exampleSucceeded(t, ns, "koordinator-image-volume-example", 2)
	if n := len(pod.Spec.InitContainers); n != 0 {
		t.Errorf("%d init containers, want none", n)
	}

	proxy, main := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "main")
	ready := proxy.first(t, "proxy: ready")
	mainReady := main.first(t, "dependency ready", "dependency", "proxy")
	mainStarted := main.first(t, "child started")
	mainExited := main.first(t, "child exited")
	stop := proxy.matching("stop dependencies exited")
	if len(stop) != 1 {
		t.Fatalf("the proxy logged %d stop conditions, want 1; proxy log: %+v", len(stop), proxy.entries)
	}
	if files, _ := stop[0].Fields["fromStateFiles"].([]any); !slices.Contains(files, any("main")) {
		t.Errorf("the proxy's stop came from %v, want main's state file (fromStateFiles %v)", stop[0].Fields["exited"], stop[0].Fields["fromStateFiles"])
	}
	stopping := proxy.first(t, "stopping the child")

	before(t, ready, mainReady, "main saw the proxy Ready after it was ready")
	before(t, mainReady, mainStarted, "main's child started after the proxy was Ready")
	before(t, mainExited, stop[0].At, "the proxy's stop condition held after main exited")
	if gap := stopping.Sub(mainExited); gap < time.Second {
		t.Errorf("the proxy was stopped %s after main exited; want at least stopDelay (1s)", gap)
	}
	for _, l := range []ctrLog{proxy, main} {
		if m := l.containing("pod-local channel"); len(m) > 0 {
			t.Errorf("%s: %s", l.name, m[0].Text)
		}
	}
}

// TestKustomizeExample applies deploy/ the kustomize way, once, as the README's Install section
// does: an overlay outside the repository names deploy/ as its base and overrides the image in one
// place (a repository named koordinator, which the test node maps to the freshly built binary), and
// kubectl apply -k creates the RBAC and the example Job, which completes.
// repository is an image reference without its tag or digest.
func repository(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// kustomizeImage is the image TestKustomizeExample's overlay names.
const kustomizeImage = "registry.example.com/e2e/koordinator:e2e"

func TestKustomizeExample(t *testing.T) {
	parallel(t)
	ns := newNamespace(t, "e2e-kustomize")
	const image = kustomizeImage
	overlay := t.TempDir()
	base, err := filepath.Rel(overlay, filepath.Join(repoRoot, "deploy")) // kustomize takes relative paths only
	if err != nil {
		t.Fatal(err)
	}
	k := "resources:\n  - " + base + "\nimages:\n  - name: ghcr.io/koordinator-dev/koordinator\n" +
		"    newName: registry.example.com/e2e/koordinator\n    newTag: e2e\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "", "apply", "-k", overlay, "-n", ns)
	pod := exampleSucceeded(t, ns, "koordinator-example", 3)
	if got := pod.Spec.InitContainers[0].Image; got != image {
		t.Errorf("init container image %q, want the overlay's %q", got, image)
	}
	for _, cs := range pod.Status.InitContainerStatuses {
		// containerd reports one of the names the image's digest has on the node, not
		// necessarily the pod's: on the real node the README's test may have pulled the same
		// image under another name first (docs/real-node.md).
		if cs.Image != image && !(onRealNode && strings.HasSuffix(repository(cs.Image), "/koordinator") && cs.ImageID != "") {
			t.Errorf("%s ran image %q, want %q", cs.Name, cs.Image, image)
		}
	}
	main := readLog(ns, pod.Name, "main")
	main.first(t, "dependency ready", "dependency", "proxy")
	main.first(t, "child exited")
}
