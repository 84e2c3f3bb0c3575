// Package kubelet is koordinator's real test node: a kubelet, containerd and runc, built from
// pinned sources by hack/build-kubelet-node.sh, registered with the local control plane
// (test/testenv), running the e2e scenarios' pods as any cluster would. It stands beside
// test/node, the process node that imitates the kubelet without root: where the two differ, the
// real one is right (docs/real-node.md lists every difference found).
//
// It needs root, and runs whole inside private namespaces: RunInside re-executes the test
// binary as PID 1 of a new mount, network, PID and UTS namespace; inside, Enter makes the
// namespace fit (tmpfs over the folders the kubelet and containerd write whatever their roots
// say, the three kernel settings the kubelet insists on, a bridge for pods, the Service
// address), then the caller starts the control plane and Start starts the node. When PID 1
// exits, every process, mount and network device of the node goes with it; RunInside then
// removes the kubelet's empty cgroups and checks the host is as it was
// (shared notes real-kubelet.md has every fact this rests on). Test code: the shipped binary
// never imports it.
package kubelet

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/koordinator-dev/koordinator/test/node"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

//go:embed versions.env
var versionsEnv string

// versions are the pinned sources' versions, from versions.env.
type versions struct {
	containerd, runc, cniPlugins, pauseImage string
}

func readVersions() versions {
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(versionsEnv))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = v
		}
	}
	return versions{containerd: kv["CONTAINERD_VERSION"], runc: kv["RUNC_VERSION"],
		cniPlugins: kv["CNI_PLUGINS_VERSION"], pauseImage: kv["PAUSE_IMAGE"]}
}

// BuildHint is what to run when the binaries are missing.
const BuildHint = "hack/build-kubelet-node.sh (or make kubelet-node)"

// paths are the built binaries, under <repo>/.cache/kubelet-node.
type paths struct {
	kubelet, containerd, runc, cniDir, pause string
}

func binaryPaths(cacheDir string) paths {
	v := readVersions()
	base := filepath.Join(cacheDir, "kubelet-node")
	return paths{
		kubelet:    filepath.Join(base, "kubelet-"+testenv.KubernetesVersion, "kubelet"),
		containerd: filepath.Join(base, "containerd-"+v.containerd, "containerd"),
		runc:       filepath.Join(base, "runc-"+v.runc, "runc"),
		cniDir:     filepath.Join(base, "cni-plugins-"+v.cniPlugins),
		pause:      filepath.Join(base, "pause"),
	}
}

// Unavailable says why the real node cannot run on this machine, or "" when it can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "the real node (kubelet + containerd + runc) needs root: it mounts, makes a network and runs containers; run the tests as root for that pass"
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err.Error()
	}
	p := binaryPaths(filepath.Join(root, ".cache"))
	for _, f := range []string{p.kubelet, p.containerd, p.containerd + "-shim-runc-v2", p.runc,
		filepath.Join(p.cniDir, "bridge"), filepath.Join(p.cniDir, "host-local"), filepath.Join(p.cniDir, "loopback"), p.pause} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Sprintf("the real node's binaries are not built (%s missing): run %s once (~5 min after the control plane)", f, BuildHint)
		}
	}
	return ""
}

// Options configures Start.
type Options struct {
	// KoordinatorBinary is the freshly built koordinator (linux/amd64, static), served as the
	// project's image under each of KoordinatorImages.
	KoordinatorBinary string
	KoordinatorImages []string
	// BusyboxBinary is a static busybox, served as a busybox image under each of BusyboxImages.
	// Default: Debian's busybox-static, fetched once into .cache/busybox.
	BusyboxBinary string
	BusyboxImages []string
	// Logf receives progress lines. Default: discard.
	Logf func(format string, args ...any)

	paths    paths
	versions versions
}

// Node is a running real test node.
type Node struct {
	opts     Options
	dir      string
	client   kubernetes.Interface
	registry *http.Server
	forward  *serviceForwarder

	containerd, kubelet *testenv.Daemon

	mu       sync.Mutex
	kept     map[string]bool // log files linked into keptLogs, relative to podLogs
	stopLogs chan struct{}
	stopOnce sync.Once
	logsDone chan struct{}
}

// Enter prepares the namespaces RunInside made: it must run first in the re-executed process,
// before anything listens or mounts.
func Enter() error {
	if !Inside() {
		return errors.New("kubelet.Enter: not inside the node's namespaces (use RunInside)")
	}
	return enterPrivateWorld(Dir())
}

// Start starts the node's image registry, containerd and the kubelet in Dir(), against cp, and
// returns once the Node is Ready. ctx bounds Start only.
func Start(ctx context.Context, cp *testenv.ControlPlane, opts Options) (_ *Node, err error) {
	dir := Dir()
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	cacheDir := filepath.Join(root, ".cache")
	opts.paths, opts.versions = binaryPaths(cacheDir), readVersions()
	if opts.BusyboxBinary == "" {
		if opts.BusyboxBinary = node.FetchBusybox(cacheDir, opts.Logf); opts.BusyboxBinary == "" {
			return nil, errors.New("kubelet node: no static busybox for the busybox image (apt-get download busybox-static failed)")
		}
	}
	client, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, dir: dir, client: client, kept: map[string]bool{}, stopLogs: make(chan struct{}), logsDone: make(chan struct{})}
	go func() {
		defer close(n.logsDone)
		n.keepLogs(n.stopLogs)
	}()
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()

	begin := time.Now()
	if n.registry, err = serveRegistry(); err != nil {
		return nil, err
	}
	if err := pushImages(opts); err != nil {
		return nil, err
	}
	opts.Logf("kubelet node: images built and pushed to the node's registry in %s", since(begin))

	if n.forward, err = forwardService(cp.Port()); err != nil {
		return nil, err
	}

	t := time.Now()
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	opts.Logf("kubelet node: containerd %s ready in %s", opts.versions.containerd, since(t))

	t = time.Now()
	if err := n.startKubelet(ctx, cp); err != nil {
		return nil, err
	}
	opts.Logf("kubelet node: kubelet %s registered Node %s, Ready in %s", testenv.KubernetesVersion, NodeName, since(t))
	return n, nil
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// serviceForwarder serves the kubernetes Service's address, serviceIP:443, by forwarding each
// connection to the apiserver on loopback, as kube-proxy would (there is none). It listens only
// while the apiserver takes connections, so that, as through kube-proxy, the address refuses
// them while the apiserver is down.
type serviceForwarder struct {
	target string
	stop   chan struct{}
	done   chan struct{}
}

func forwardService(apiPort int) (*serviceForwarder, error) {
	f := &serviceForwarder{target: fmt.Sprintf("127.0.0.1:%d", apiPort), stop: make(chan struct{}), done: make(chan struct{})}
	ln, err := f.listen()
	if err != nil {
		return nil, fmt.Errorf("kubelet node: the Service address: %w", err)
	}
	go f.run(ln)
	return f, nil
}

func (f *serviceForwarder) listen() (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort(serviceIP, "443"))
}

func (f *serviceForwarder) backendUp() bool {
	c, err := net.DialTimeout("tcp", f.target, time.Second)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// run serves ln, checks the apiserver every 100 ms, closes the listener while it is down and
// listens again once it is back.
func (f *serviceForwarder) run(ln net.Listener) {
	defer close(f.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	if ln != nil {
		go f.serve(ln)
	}
	for {
		select {
		case <-f.stop:
			if ln != nil {
				ln.Close()
			}
			return
		case <-tick.C:
		}
		switch up := f.backendUp(); {
		case up && ln == nil:
			if l, err := f.listen(); err == nil {
				ln = l
				go f.serve(ln)
			}
		case !up && ln != nil:
			ln.Close()
			ln = nil
		}
	}
}

func (f *serviceForwarder) serve(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.DialTimeout("tcp", f.target, 5*time.Second)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(in, out)
		}()
	}
}

func (f *serviceForwarder) Close() {
	close(f.stop)
	<-f.done
}

// Stop stops the kubelet, then containerd, then the registry. The containers' processes, the
// shims and the mounts end with the namespace's PID 1.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopLogs) })
	<-n.logsDone
	if n.kubelet != nil {
		_ = n.kubelet.Stop(10 * time.Second)
	}
	if n.containerd != nil {
		_ = n.containerd.Stop(10 * time.Second)
	}
	if n.forward != nil {
		n.forward.Close()
	}
	if n.registry != nil {
		_ = n.registry.Close()
	}
}

// Name is the Node's name.
func (n *Node) Name() string { return NodeName }

// podLogs is where the kubelet writes containers' logs, in the CRI format; keptLogs holds a
// hard link to each of its files, made as soon as it appears (keepLogs), because the kubelet
// removes a restarted container's earlier files once the pod has finished, before a test reads
// them. Both are on the namespace's tmpfs over /var/log.
const (
	podLogs  = "/var/log/pods"
	keptLogs = "/var/log/kept-by-test"
)

// keepLogs links every new log file into keptLogs, every 100 ms until stop is closed.
func (n *Node) keepLogs(stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		n.linkNewLogs()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

func (n *Node) linkNewLogs() {
	n.mu.Lock()
	defer n.mu.Unlock()
	files, _ := filepath.Glob(filepath.Join(podLogs, "*", "*", "*.log"))
	for _, f := range files {
		rel, err := filepath.Rel(podLogs, f)
		if err != nil || n.kept[rel] {
			continue
		}
		target := filepath.Join(keptLogs, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			continue
		}
		if err := os.Link(f, target); err == nil || errors.Is(err, os.ErrExist) {
			n.kept[rel] = true
		}
	}
}

// LogLines returns every line a container of a pod wrote, over all its restarts in order, from
// the kubelet's log files (timed by the runtime when it received them).
func (n *Node) LogLines(namespace, pod, container string) []node.LogLine {
	n.linkNewLogs()
	files, _ := filepath.Glob(filepath.Join(keptLogs, namespace+"_"+pod+"_*", container, "*.log"))
	sort.Slice(files, func(i, j int) bool { return restartOf(files[i]) < restartOf(files[j]) })
	var out []node.LogLine
	for _, f := range files {
		lines, _ := node.ReadLogFile(f)
		out = append(out, lines...)
	}
	return out
}

// restartOf is the restart count a kubelet log file is named after (0.log, 1.log, ...).
func restartOf(path string) int {
	var k int
	_, _ = fmt.Sscanf(filepath.Base(path), "%d.log", &k)
	return k
}

// Logs is LogLines as text, a line each.
func (n *Node) Logs(namespace, pod, container string) string {
	return node.Text(n.LogLines(namespace, pod, container))
}

// waitNodeReady polls the Node until the kubelet reports it Ready.
func (n *Node) waitNodeReady(ctx context.Context, d *testenv.Daemon) error {
	for {
		nd, err := n.client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			for _, c := range nd.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		if d.Exited() {
			return d.Failure(errors.New("exited before the Node was Ready"))
		}
		select {
		case <-ctx.Done():
			return d.Failure(fmt.Errorf("the Node is not Ready: %w", ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
