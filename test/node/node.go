// Package node is koordinator's local test node: it registers a Node with a
// real API server (test/testenv), takes the pods the real scheduler binds to
// it, and runs their containers as local processes the way the kubelet
// would, writing pod status in the kubelet's shapes and at its moments
// (shared notes kubelet-status.md). It is test code: the shipped binary never
// imports it.
//
// Each container instance runs in its own user, mount, PID, UTS and IPC
// namespaces (uid 0 inside, mapped to the caller's uid, so no root is needed
// where unprivileged user namespaces work) on a fresh tmpfs root holding the
// image's content, the pod's volumes at the manifest's mount paths, the
// service-account token, /proc and a small /dev. The binary that imports
// this package is its own helper: it re-executes itself with
// KOORDINATOR_TEST_NODE_INIT set, builds the root, pivots into it and execs
// the container's command, which so is PID 1. Containers share the host's
// network (pod IP 127.0.0.1), as hostNetwork pods do.
//
// Everything the node writes lives under Options.WorkDir; every process it
// starts dies with it (Pdeathsig on each container's PID 1, whose death ends
// its PID namespace), and Stop kills them all.
//
// Deliberately left out: image pulls (images map to local roots, see
// mapImage), resource limits, runAsUser (only uid 0 is mapped), liveness
// probes, lifecycle hooks, token rotation, ports and pod networking.
package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/koordinator-dev/koordinator/test/proctest"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

// Options configures Start.
type Options struct {
	// Name of the Node object. Default "local-node".
	Name string
	// KoordinatorBinary is the freshly built koordinator (linux/amd64,
	// static). The project's image maps to a root holding it at
	// /bin/koordinator with entrypoint [/bin/koordinator --install].
	// Required when a pod uses that image.
	KoordinatorBinary string
	// WorkDir holds everything the node writes (pod folders, container roots'
	// mount points, logs). Default: a fresh folder under <repo>/.cache/node/.
	// Stop removes it.
	WorkDir string
	// CrashLoopBase is the crash-loop back-off base: the first restart is
	// immediate, then the delay is CrashLoopBase doubling up to 30×
	// CrashLoopBase (the kubelet's 10 s → 300 s). Default 10 s; tests
	// usually scale it to 1 s or less (1 s is the kubelet's figures ÷ 10).
	CrashLoopBase time.Duration
	// BusyboxBinary is a static busybox whose applets the host lacks (httpd,
	// wget, ...) are put first in busybox images' PATH. Default:
	// <repo>/.cache/busybox/busybox, extracted once from Debian's
	// busybox-static with apt-get download when missing; "none" disables it.
	BusyboxBinary string
	// Logf receives progress lines (for example t.Logf). Default: discard.
	Logf func(format string, args ...any)
}

// nodeIP is the node's and every pod's address: containers share the host's
// loopback network.
const nodeIP = "127.0.0.1"

// Node is a running local test node.
type Node struct {
	opts              Options
	cp                *testenv.ControlPlane
	client            kubernetes.Interface
	exe               string
	busyboxDir        string
	koordinatorDigest string

	started time.Time // relists tick from here (nextRelist)
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	imageMu             sync.Mutex
	koordinatorImageDir string // image volumes' content, made on first use

	mu        sync.Mutex
	workers   map[types.UID]*podWorker
	logs      map[string][]string // namespace/pod/container → log files, in start order
	instances []*instance         // every instance ever started
	stopped   bool
}

// Start registers the Node (Ready, with capacity, so the scheduler binds pods
// to it; testenv disables the TaintNodesByCondition admission plugin, so it
// gets no not-ready taint), watches the pods bound to it, and runs them. ctx
// bounds Start only; the node runs until Stop.
func Start(ctx context.Context, cp *testenv.ControlPlane, opts Options) (_ *Node, err error) {
	if opts.Name == "" {
		opts.Name = "local-node"
	}
	if opts.CrashLoopBase <= 0 {
		opts.CrashLoopBase = 10 * time.Second
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	cacheDir := filepath.Join(root, ".cache")
	if opts.WorkDir == "" {
		if err := os.MkdirAll(filepath.Join(cacheDir, "node"), 0o755); err != nil {
			return nil, err
		}
		if opts.WorkDir, err = os.MkdirTemp(filepath.Join(cacheDir, "node"), ""); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(opts.WorkDir, 0o755); err != nil {
		return nil, err
	}
	if opts.WorkDir, err = filepath.Abs(opts.WorkDir); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:    opts,
		cp:      cp,
		exe:     exe,
		workers: map[types.UID]*podWorker{},
		logs:    map[string][]string{},
	}
	defer func() {
		if err != nil {
			os.RemoveAll(opts.WorkDir)
		}
	}()
	if opts.KoordinatorBinary != "" {
		if n.opts.KoordinatorBinary, err = filepath.Abs(opts.KoordinatorBinary); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(n.opts.KoordinatorBinary)
		if err != nil {
			return nil, fmt.Errorf("node: koordinator binary: %w", err)
		}
		sum := sha256.Sum256(b)
		n.koordinatorDigest = "sha256:" + hex.EncodeToString(sum[:])
	}
	switch opts.BusyboxBinary {
	case "none":
	case "":
		opts.BusyboxBinary = FetchBusybox(cacheDir, opts.Logf)
		fallthrough
	default:
		if n.busyboxDir, err = findBusybox(opts.BusyboxBinary, opts.WorkDir); err != nil {
			return nil, err
		}
	}
	if n.client, err = kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		return nil, err
	}
	if err := n.register(ctx); err != nil {
		return nil, err
	}
	n.started = time.Now()
	n.ctx, n.cancel = context.WithCancel(context.Background())

	lw := cache.NewListWatchFromClient(n.client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll,
		fields.OneTermEqualSelector("spec.nodeName", opts.Name))
	informer := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	_, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.dispatch(obj, false) },
		UpdateFunc: func(_, obj any) { n.dispatch(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			n.dispatch(obj, true)
		},
	})
	if err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		informer.Run(n.ctx.Done())
	}()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		n.Stop()
		return nil, fmt.Errorf("node: pod informer did not sync: %w", ctx.Err())
	}
	opts.Logf("node: %s ready (work folder %s, busybox applets: %v)", opts.Name, opts.WorkDir, n.busyboxDir != "")
	return n, nil
}

// register creates (or replaces) the Node object and marks it Ready.
func (n *Node) register(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	_ = nodes.Delete(ctx, n.opts.Name, metav1.DeleteOptions{})
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   n.opts.Name,
			Labels: map[string]string{"kubernetes.io/hostname": n.opts.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
		},
	}
	var created *corev1.Node
	err := retry(ctx, func() error {
		var err error
		created, err = nodes.Create(ctx, obj, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node: create Node %s: %w", n.opts.Name, err)
	}
	now := metav1.Now()
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP},
			{Type: corev1.NodeHostName, Address: n.opts.Name},
		},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "local test node is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: testenv.KubernetesVersion, OperatingSystem: "linux", Architecture: "amd64",
			ContainerRuntimeVersion: "local://processes",
		},
	}
	err = retry(ctx, func() error {
		_, err := nodes.UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node: mark Node %s Ready: %w", n.opts.Name, err)
	}
	return nil
}

// retry calls f until it succeeds, returns a non-retryable error, or ctx ends.
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil || apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dispatch hands a pod event to the pod's worker, making one for a new pod.
func (n *Node) dispatch(obj any, deleted bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
	w := n.workers[pod.UID]
	if w == nil {
		if deleted {
			return
		}
		terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
		if terminal && pod.DeletionTimestamp == nil {
			return // finished before this node started: nothing to run
		}
		w = newPodWorker(n, pod)
		n.workers[pod.UID] = w
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			w.run()
			n.mu.Lock()
			if n.workers[pod.UID] == w {
				// Keep a tombstone so late events do not restart the pod.
				n.workers[pod.UID] = finishedWorker
			}
			n.mu.Unlock()
		}()
	}
	if w != finishedWorker {
		w.update(pod, deleted)
	}
}

// finishedWorker marks a pod whose worker has returned.
var finishedWorker = &podWorker{}

// track records a started instance and its log file.
func (n *Node) track(inst *instance) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.instances = append(n.instances, inst)
}

func (n *Node) addLog(namespace, pod, container, path string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := namespace + "/" + pod + "/" + container
	n.logs[key] = append(n.logs[key], path)
}

// Logs returns the stdout and stderr of every instance of a container, in
// order, like kubectl logs --previous followed by kubectl logs.
func (n *Node) Logs(namespace, pod, container string) string {
	return Text(n.LogLines(namespace, pod, container))
}

// Text is lines as a container wrote them, a line each.
func Text(lines []LogLine) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// LogLines is Logs with the time the node received each line and its stream.
func (n *Node) LogLines(namespace, pod, container string) []LogLine {
	n.mu.Lock()
	paths := append([]string(nil), n.logs[namespace+"/"+pod+"/"+container]...)
	n.mu.Unlock()
	var out []LogLine
	for _, p := range paths {
		lines, _ := ReadLogFile(p)
		out = append(out, lines...)
	}
	return out
}

// PIDs returns the host pids of every container instance's PID 1 the node
// ever started.
func (n *Node) PIDs() []int {
	n.mu.Lock()
	defer n.mu.Unlock()
	var pids []int
	for _, i := range n.instances {
		pids = append(pids, i.pid)
	}
	return pids
}

// Leftovers returns the pids of processes that still run in any PID
// namespace the node made (probe processes included). After Stop it is
// empty. Call it once, after Stop: it lets go of the namespaces the node held
// open so that no other namespace could take their identity.
func (n *Node) Leftovers() []int {
	n.mu.Lock()
	nss := map[string]bool{}
	var holds []*os.File
	for _, i := range n.instances {
		if i.pidNS != "" && i.nsHold != nil {
			nss[i.pidNS] = true
			holds = append(holds, i.nsHold)
			i.nsHold = nil
		}
	}
	n.mu.Unlock()
	defer func() {
		for _, f := range holds {
			f.Close()
		}
	}()
	var pids []int
	for _, st := range proctest.All() {
		if !st.Exited() && nss[st.PIDNamespace()] {
			pids = append(pids, st.Pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// Stop kills every container the node started (SIGTERM, SIGKILL after a
// short grace), waits for them, deletes the Node object and removes WorkDir.
// Pods stay in the API as they are. Safe to call twice.
func (n *Node) Stop() {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return
	}
	n.stopped = true
	n.mu.Unlock()
	if n.cancel != nil {
		n.cancel() // workers kill their containers and return
	}
	n.wg.Wait()

	// Belt and braces: nothing started may survive, whatever a worker did.
	n.mu.Lock()
	insts := append([]*instance(nil), n.instances...)
	n.mu.Unlock()
	for _, i := range insts {
		i.signal(syscall.SIGKILL)
		<-i.done
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(n.Leftovers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the kernel tears down a PID namespace asynchronously
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n.client != nil {
		if err := n.client.CoreV1().Nodes().Delete(ctx, n.opts.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			n.opts.Logf("node: delete Node %s: %v", n.opts.Name, err)
		}
	}
	if err := os.RemoveAll(n.opts.WorkDir); err != nil {
		n.opts.Logf("node: remove %s: %v", n.opts.WorkDir, err)
	}
}

// Name is the Node object's name.
func (n *Node) Name() string { return n.opts.Name }

// WorkDir is the folder holding everything the node writes.
func (n *Node) WorkDir() string { return n.opts.WorkDir }
