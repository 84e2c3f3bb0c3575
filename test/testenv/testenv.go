// Package testenv starts a real local Kubernetes control plane — etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, built from
// pinned sources by hack/build-control-plane.sh — for koordinator's
// integration and end-to-end tests. It is test code: the shipped binary never
// imports it.
//
// Everything it writes lives in a run folder under the repository's
// git-ignored .cache/run/; every process it starts gets its own process group
// and SIGKILL if the test process dies, and Stop kills them all and removes the
// run folder.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/koordinator-dev/koordinator/test/proctest"
)

// Pinned versions; keep in sync with test/testenv/tools/go.mod and
// test/testenv/etcd/go.mod (hack/build-control-plane.sh names its output
// folders after them).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.7"
)

// EnvControlPlaneDir overrides where the binaries are looked up.
const EnvControlPlaneDir = "KOORDINATOR_CONTROLPLANE_DIR"

// BuildHint is what to run when the binaries are missing.
const BuildHint = "hack/build-control-plane.sh (or make controlplane)"

const (
	rootModule  = "github.com/koordinator-dev/koordinator"
	serviceCIDR = "10.0.0.0/24"
	serviceIP   = "10.0.0.1" // first address of serviceCIDR: the kubernetes Service
	// ServiceAccountIssuer is the apiserver's --service-account-issuer and the
	// default audience of the tokens it issues.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// DefaultControllers is the minimal kube-controller-manager set that the
// local node and the e2e scenarios need (notes/control-plane.md), plus the
// CronJob controller for scheduled runs. The node-lifecycle controller is left
// out on purpose: without a kubelet heartbeat it would taint the Node.
var DefaultControllers = []string{
	"job-controller",
	"cronjob-controller",
	"serviceaccount-controller",
	"namespace-controller",
	"garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
}

// ErrNotBuilt is returned (wrapped) by Start and FindBinaries when a binary is
// missing; tests skip on it.
var ErrNotBuilt = errors.New("control-plane binaries not built; run " + BuildHint)

// Options configures Start. The zero value is fine.
type Options struct {
	// BinDir is where the binaries are looked up, either directly or in the
	// k8s-<version>/ and etcd-<version>/ folders the build script makes.
	// Default: $KOORDINATOR_CONTROLPLANE_DIR, else <repo>/.cache/controlplane.
	BinDir string
	// CacheDir is the repo's git-ignored cache folder; the run folder is made
	// under CacheDir/run. Default: <repo>/.cache, found by walking up from the
	// working directory to koordinator's go.mod.
	CacheDir string
	// Controllers for kube-controller-manager. Default: DefaultControllers.
	Controllers []string
	// Extra flags, appended after the defaults (a later flag wins).
	EtcdFlags, APIServerFlags, ControllerManagerFlags, SchedulerFlags []string
	// ReadyTimeout bounds each readiness wait. Default: 2 minutes.
	ReadyTimeout time.Duration
	// Logf receives progress lines (for example t.Logf). Default: discard.
	Logf func(format string, args ...any)
	// KeepRunDir keeps the run folder (certificates, logs, etcd data) after
	// Stop, for debugging.
	KeepRunDir bool
}

// Binaries are the paths of the five control-plane binaries.
type Binaries struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kubectl string
}

// ControlPlane is a running local control plane. Its methods are safe for
// concurrent use.
type ControlPlane struct {
	opts Options
	bins Binaries
	dir  string
	pki  *pki

	etcdURL    string
	apiPort    int
	schedPort  int
	host       string
	kubeconfig string
	apiArgs    []string

	admin *http.Client

	mu      sync.Mutex
	procs   map[string]*process // running components by name
	started []*process          // every process ever started, for PIDs
	stopped bool
}

// Component names, also the log file names (<run>/logs/<name>.log).
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
)

// FindBinaries locates the five binaries in binDir (see Options.BinDir; ""
// means the default). The error wraps ErrNotBuilt when one is missing.
func FindBinaries(binDir string) (Binaries, error) {
	if binDir == "" {
		binDir = os.Getenv(EnvControlPlaneDir)
	}
	if binDir == "" {
		cache, err := defaultCacheDir()
		if err != nil {
			return Binaries{}, err
		}
		binDir = filepath.Join(cache, "controlplane")
	}
	k8sDir := filepath.Join(binDir, "k8s-"+KubernetesVersion)
	etcdDir := filepath.Join(binDir, "etcd-"+EtcdVersion)
	find := func(name string, dirs ...string) (string, error) {
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found in %s: %w", name, strings.Join(dirs, " or "), ErrNotBuilt)
	}
	var b Binaries
	var err error
	if b.Etcd, err = find("etcd", binDir, etcdDir); err != nil {
		return b, err
	}
	for name, dst := range map[string]*string{
		"kube-apiserver": &b.APIServer, "kube-controller-manager": &b.ControllerManager,
		"kube-scheduler": &b.Scheduler, "kubectl": &b.Kubectl,
	} {
		if *dst, err = find(name, binDir, k8sDir); err != nil {
			return b, err
		}
	}
	return b, nil
}

// RepoRoot returns koordinator's repository root, found by walking up from
// the working directory to the go.mod of module github.com/koordinator-dev/koordinator.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if modulePath(filepath.Join(dir, "go.mod")) == rootModule {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("testenv: no go.mod of module %s above %s", rootModule, wd)
		}
	}
}

func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`)
		}
	}
	return ""
}

func defaultCacheDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache"), nil
}

// Start starts etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler and waits until they really work: etcd /health, the
// apiserver's /readyz (as admin), the scheduler's /healthz, and the `default`
// ServiceAccount in namespace `default` (made by the controller-manager). ctx
// bounds the start-up only; the processes live until Stop. On error nothing is
// left running and the run folder is removed; the error carries the tail of
// the failing component's log.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	begin := time.Now()
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if len(opts.Controllers) == 0 {
		opts.Controllers = DefaultControllers
	}
	bins, err := FindBinaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	if opts.CacheDir == "" {
		if opts.CacheDir, err = defaultCacheDir(); err != nil {
			return nil, err
		}
	}
	runBase := filepath.Join(opts.CacheDir, "run")
	if err := os.MkdirAll(runBase, 0o755); err != nil {
		return nil, err
	}
	removeStaleRunDirs(runBase)
	dir, err := os.MkdirTemp(runBase, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"+proctest.PIDNamespace(0)+"\n"), 0o644); err != nil {
		return nil, err
	}
	cp := &ControlPlane{opts: opts, bins: bins, dir: dir, procs: map[string]*process{}}
	defer func() {
		if err != nil {
			if stopErr := cp.Stop(); stopErr != nil {
				err = fmt.Errorf("%w (and while cleaning up: %v)", err, stopErr)
			}
		}
	}()
	for _, sub := range []string{"logs", "etcd", "kube-controller-manager", "kube-scheduler"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if cp.pki, err = generatePKI(filepath.Join(dir, "pki")); err != nil {
		return nil, fmt.Errorf("testenv: certificates: %w", err)
	}
	if cp.admin, err = cp.adminClient(); err != nil {
		return nil, err
	}

	// etcd.
	t := time.Now()
	if err := cp.startWithFreePorts(ctx, Etcd, 2, func(ports []int) (string, []string) {
		cp.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		args := []string{
			"--name=default",
			"--data-dir=" + filepath.Join(dir, "etcd", "data"),
			"--listen-client-urls=" + cp.etcdURL,
			"--advertise-client-urls=" + cp.etcdURL,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--initial-cluster-state=new",
			"--unsafe-no-fsync", // throw-away data: skip fsync, much faster on slow disks
		}
		return bins.Etcd, append(args, opts.EtcdFlags...)
	}, cp.etcdHealthy); err != nil {
		return nil, err
	}
	opts.Logf("testenv: etcd %s ready at %s in %s", EtcdVersion, cp.etcdURL, since(t))

	// kube-apiserver.
	t = time.Now()
	if err := cp.startWithFreePorts(ctx, APIServer, 1, func(ports []int) (string, []string) {
		cp.apiPort = ports[0]
		cp.host = fmt.Sprintf("https://127.0.0.1:%d", cp.apiPort)
		cp.apiArgs = append([]string{
			"--etcd-servers=" + cp.etcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(cp.apiPort),
			"--advertise-address=" + serviceIP, // a loopback address is refused
			"--tls-cert-file=" + cp.pki.ServingCert,
			"--tls-private-key-file=" + cp.pki.ServingKey,
			"--client-ca-file=" + cp.pki.CACert,
			"--service-account-key-file=" + cp.pki.SAPublicKey,
			"--service-account-signing-key-file=" + cp.pki.SAPrivateKey,
			"--service-account-issuer=" + ServiceAccountIssuer,
			"--authorization-mode=Node,RBAC",
			"--service-cluster-ip-range=" + serviceCIDR,
			"--endpoint-reconciler-type=none",
			// New Nodes would get node.kubernetes.io/not-ready:NoSchedule and
			// pods would stay Pending (notes/control-plane.md, trap 1).
			"--disable-admission-plugins=TaintNodesByCondition",
			"--cert-dir=" + filepath.Join(dir, "kube-apiserver"),
			// For a real kubelet (test/kubelet): logs and exec go to its API as
			// the admin, which its x509 client CA (this CA) trusts.
			"--kubelet-client-certificate=" + cp.pki.AdminCert,
			"--kubelet-client-key=" + cp.pki.AdminKey,
			"--kubelet-preferred-address-types=InternalIP",
		}, opts.APIServerFlags...)
		return bins.APIServer, cp.apiArgs
	}, cp.apiReady); err != nil {
		return nil, err
	}
	opts.Logf("testenv: kube-apiserver %s ready at %s in %s", KubernetesVersion, cp.host, since(t))

	cp.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := writeKubeconfig(cp.kubeconfig, cp.host, cp.pki.CACert, cp.pki.AdminCert, cp.pki.AdminKey, "admin"); err != nil {
		return nil, err
	}
	cmKubeconfig := filepath.Join(dir, "kube-controller-manager", "kubeconfig")
	if err := writeKubeconfig(cmKubeconfig, cp.host, cp.pki.CACert, cp.pki.ControllerMgrCert, cp.pki.ControllerMgrKey, "system:kube-controller-manager"); err != nil {
		return nil, err
	}
	schedKubeconfig := filepath.Join(dir, "kube-scheduler", "kubeconfig")
	if err := writeKubeconfig(schedKubeconfig, cp.host, cp.pki.CACert, cp.pki.SchedulerCert, cp.pki.SchedulerKey, "system:kube-scheduler"); err != nil {
		return nil, err
	}

	// kube-controller-manager. Its /healthz answers before its controllers
	// run; the default ServiceAccount appearing is the real sign it works.
	t = time.Now()
	if err := cp.startWithFreePorts(ctx, ControllerManager, 1, func(ports []int) (string, []string) {
		return bins.ControllerManager, append([]string{
			"--kubeconfig=" + cmKubeconfig,
			"--authentication-kubeconfig=" + cmKubeconfig,
			"--authorization-kubeconfig=" + cmKubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + filepath.Join(dir, "kube-controller-manager"),
			"--service-account-private-key-file=" + cp.pki.SAPrivateKey,
			"--root-ca-file=" + cp.pki.CACert,
			"--use-service-account-credentials=true",
			"--leader-elect=false",
			"--controllers=" + strings.Join(opts.Controllers, ","),
		}, opts.ControllerManagerFlags...)
	}, func(ctx context.Context) error {
		return cp.expectStatus(ctx, "/api/v1/namespaces/default/serviceaccounts/default", http.StatusOK)
	}); err != nil {
		return nil, err
	}
	opts.Logf("testenv: kube-controller-manager working (default ServiceAccount exists) in %s", since(t))

	// kube-scheduler.
	t = time.Now()
	if err := cp.startWithFreePorts(ctx, Scheduler, 1, func(ports []int) (string, []string) {
		cp.schedPort = ports[0]
		return bins.Scheduler, append([]string{
			"--kubeconfig=" + schedKubeconfig,
			"--authentication-kubeconfig=" + schedKubeconfig,
			"--authorization-kubeconfig=" + schedKubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(cp.schedPort),
			"--cert-dir=" + filepath.Join(dir, "kube-scheduler"),
			"--leader-elect=false",
		}, opts.SchedulerFlags...)
	}, cp.schedulerHealthy); err != nil {
		return nil, err
	}
	opts.Logf("testenv: kube-scheduler healthy in %s", since(t))
	opts.Logf("testenv: control plane up in %s; run folder %s; kubeconfig %s", since(begin), dir, cp.kubeconfig)
	return cp, nil
}

// ownerFile in a run folder holds the pid of the process that made it and,
// on a second line, its PID namespace: a control plane started inside the
// real test node's namespaces (test/kubelet) has a pid that means nothing
// outside them, and the other way round.
const ownerFile = "owner.pid"

// ownerAlive reports whether the owner a run folder names may still run. In
// this process's PID namespace (or when the file names none) the pid says.
// In another one it is alive while any process seen here is in that
// namespace; a namespace no process here is in is gone when this process
// sees every namespace (it is in the host's), and may be an ancestor's,
// alive, when it does not.
func ownerAlive(pid int, ns string) bool {
	if ns == "" || ns == proctest.PIDNamespace(0) {
		return processAlive(pid)
	}
	for _, st := range proctest.All() {
		if st.PIDNamespace() == ns {
			return true
		}
	}
	return !inHostPIDNamespace()
}

// inHostPIDNamespace reports whether this process is in the outermost PID
// namespace: its NSpid line lists one pid, not one per nesting level.
func inHostPIDNamespace() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return len(strings.Fields(rest)) == 1
		}
	}
	return false
}

// removeStaleRunDirs removes run folders whose owner process is gone (a test
// binary killed before it could call Stop; its children died with it).
func removeStaleRunDirs(runBase string) {
	entries, err := os.ReadDir(runBase)
	if err != nil {
		return
	}
	for _, e := range entries {
		dir := filepath.Join(runBase, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			if st, serr := os.Stat(dir); serr == nil && time.Since(st.ModTime()) > time.Hour {
				os.RemoveAll(dir) // never got an owner file: a start that died at once
			}
			continue
		}
		lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
		ns := ""
		if len(lines) == 2 {
			ns = strings.TrimSpace(lines[1])
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(lines[0])); err == nil && pid > 0 && !ownerAlive(pid, ns) {
			os.RemoveAll(dir)
		}
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// startWithFreePorts starts a component on nPorts fresh loopback ports and
// waits until ready succeeds. If the component loses a race for a port
// ("address already in use"), it retries with new ports.
func (cp *ControlPlane) startWithFreePorts(ctx context.Context, name string, nPorts int,
	command func(ports []int) (bin string, args []string), ready func(context.Context) error) error {
	const attempts = 3
	for i := 1; ; i++ {
		ports, err := freePorts(nPorts)
		if err != nil {
			return err
		}
		bin, args := command(ports)
		p, err := cp.spawn(name, bin, args)
		if err != nil {
			return err
		}
		err = waitFor(ctx, p, cp.opts.ReadyTimeout, name+" readiness", ready)
		if err == nil {
			return nil
		}
		if i < attempts && p.exited() && strings.Contains(tail(p.logPath, 40, 8192), "address already in use") {
			cp.opts.Logf("testenv: %s lost a port race (%v), retrying with new ports", name, ports)
			continue
		}
		return err
	}
}

// spawn starts a component and records it.
func (cp *ControlPlane) spawn(name, bin string, args []string) (*process, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.stopped {
		return nil, errors.New("testenv: control plane stopped")
	}
	if old := cp.procs[name]; old != nil && !old.exited() {
		return nil, fmt.Errorf("testenv: %s is already running (pid %d)", name, old.pid())
	}
	p, err := startProcess(name, bin, args, nil, cp.dir, cp.LogFile(name))
	if err != nil {
		return nil, err
	}
	cp.procs[name] = p
	cp.started = append(cp.started, p)
	return p, nil
}

// waitFor polls check every 100 ms until it succeeds, p exits, ctx ends or
// timeout passes; failures carry the tail of p's log.
func waitFor(ctx context.Context, p *process, timeout time.Duration, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if p.exited() {
			return p.failure(fmt.Errorf("exited while waiting for %s", what))
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		lastErr := check(cctx)
		ccancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.failure(fmt.Errorf("waiting for %s: %w (last check: %v)", what, ctx.Err(), lastErr))
		case <-p.done:
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testenv: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (cp *ControlPlane) adminClient() (*http.Client, error) {
	pool, err := cp.caPool()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(cp.pki.AdminCert, cp.pki.AdminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
			DisableKeepAlives:   false,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		},
	}, nil
}

func (cp *ControlPlane) caPool() (*x509.CertPool, error) {
	pem, err := os.ReadFile(cp.pki.CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("testenv: bad CA file")
	}
	return pool, nil
}

func (cp *ControlPlane) etcdHealthy(ctx context.Context) error {
	body, err := get(ctx, http.DefaultClient, cp.etcdURL+"/health", http.StatusOK)
	if err != nil {
		return err
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
		return fmt.Errorf("etcd /health: %s", bytes.TrimSpace(body))
	}
	return nil
}

func (cp *ControlPlane) apiReady(ctx context.Context) error {
	_, err := get(ctx, cp.admin, cp.host+"/readyz", http.StatusOK)
	return err
}

func (cp *ControlPlane) schedulerHealthy(ctx context.Context) error {
	// The scheduler serves a self-signed certificate from its --cert-dir;
	// /healthz is on loopback and needs no trust.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	_, err := get(ctx, c, fmt.Sprintf("https://127.0.0.1:%d/healthz", cp.schedPort), http.StatusOK)
	return err
}

// expectStatus GETs an apiserver path as admin and expects the given status.
func (cp *ControlPlane) expectStatus(ctx context.Context, path string, want int) error {
	_, err := get(ctx, cp.admin, cp.host+path, want)
	return err
}

func get(ctx context.Context, c *http.Client, url string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != want {
		return body, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// apiServerOutageGrace bounds StopAPIServer. On SIGTERM kube-apiserver stops
// listening at once but keeps serving open watches until they end or
// --request-timeout (60 s) passes, so with clients connected it would not exit
// on its own for a minute.
const apiServerOutageGrace = 3 * time.Second

// StopAPIServer stops kube-apiserver: SIGTERM (it stops listening at once),
// then SIGKILL after 3 s if open watches keep it alive, and waits until the
// process is gone. When it returns no connection to the apiserver survives.
// etcd, the controller-manager and the scheduler keep running (and retry), as
// on a real cluster during an apiserver outage.
func (cp *ControlPlane) StopAPIServer() error {
	cp.mu.Lock()
	p := cp.procs[APIServer]
	delete(cp.procs, APIServer)
	cp.mu.Unlock()
	if p == nil {
		return errors.New("testenv: kube-apiserver is not running")
	}
	t := time.Now()
	err := p.stop(apiServerOutageGrace)
	cp.admin.CloseIdleConnections()
	cp.opts.Logf("testenv: kube-apiserver stopped in %s (%s)", since(t), p.exitStatus())
	return err
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the same
// port with the same flags, and waits for /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	p, err := cp.spawn(APIServer, cp.bins.APIServer, cp.apiArgs)
	if err != nil {
		return err
	}
	t := time.Now()
	if err := waitFor(ctx, p, cp.opts.ReadyTimeout, "kube-apiserver readiness after restart", cp.apiReady); err != nil {
		return err
	}
	cp.opts.Logf("testenv: kube-apiserver ready again in %s", since(t))
	return nil
}

// Stop stops every process Start started (scheduler, controller-manager,
// apiserver, etcd: SIGTERM to the process group, SIGKILL after 10 s, then
// wait) and removes the run folder unless Options.KeepRunDir. It is safe to
// call more than once.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	cp.stopped = true
	started := append([]*process(nil), cp.started...)
	cp.procs = map[string]*process{}
	cp.mu.Unlock()

	var errs []error
	// Clients before the servers they talk to: an apiserver with open watches
	// would otherwise wait for them (up to --request-timeout) before exiting.
	rank := map[string]int{Scheduler: 0, ControllerManager: 1, APIServer: 2, Etcd: 3}
	sort.SliceStable(started, func(i, j int) bool { return rank[started[i].name] < rank[started[j].name] })
	for _, p := range started {
		if p.exited() {
			continue
		}
		t := time.Now()
		if err := p.stop(stopGrace); err != nil {
			errs = append(errs, err)
		}
		cp.opts.Logf("testenv: %s stopped in %s (%s)", p.name, since(t), p.exitStatus())
	}
	if cp.admin != nil {
		cp.admin.CloseIdleConnections()
	}
	if !cp.opts.KeepRunDir && cp.dir != "" {
		if err := os.RemoveAll(cp.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PIDs returns the process ids of every process this control plane started,
// including ones already stopped (for example an apiserver before a restart).
func (cp *ControlPlane) PIDs() []int {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	pids := make([]int, 0, len(cp.started))
	for _, p := range cp.started {
		pids = append(pids, p.pid())
	}
	return pids
}

// Running reports whether the named component (Etcd, APIServer, ...) is
// currently running.
func (cp *ControlPlane) Running(name string) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	p := cp.procs[name]
	return p != nil && !p.exited()
}

// Dir is the run folder (.cache/run/<random>).
func (cp *ControlPlane) Dir() string { return cp.dir }

// LogFile is the log of a component (Etcd, APIServer, ControllerManager,
// Scheduler): its stdout and stderr, appended across restarts.
func (cp *ControlPlane) LogFile(name string) string {
	return filepath.Join(cp.dir, "logs", name+".log")
}

// Binaries returns the paths of the binaries in use (Kubectl included).
func (cp *ControlPlane) Binaries() Binaries { return cp.bins }

// Kubeconfig is the path of an admin (system:masters) kubeconfig with the
// CA and client certificate embedded.
func (cp *ControlPlane) Kubeconfig() string { return cp.kubeconfig }

// Host is the apiserver URL, https://127.0.0.1:<port>.
func (cp *ControlPlane) Host() string { return cp.host }

// Port is the apiserver's port on 127.0.0.1 (what KUBERNETES_SERVICE_PORT
// must be for an in-cluster client on the local node).
func (cp *ControlPlane) Port() int { return cp.apiPort }

// CAFile is the PEM CA bundle that verifies the apiserver's serving
// certificate (SANs 127.0.0.1, localhost, 10.0.0.1, kubernetes,
// kubernetes.default, kubernetes.default.svc[.cluster.local]); it is also the
// controller-manager's --root-ca-file, so it is what the kube-root-ca.crt
// ConfigMaps hold.
func (cp *ControlPlane) CAFile() string { return cp.pki.CACert }

// ClientCertFile and ClientKeyFile are the admin (O=system:masters) client
// certificate and key.
func (cp *ControlPlane) ClientCertFile() string { return cp.pki.AdminCert }

// ClientKeyFile: see ClientCertFile.
func (cp *ControlPlane) ClientKeyFile() string { return cp.pki.AdminKey }

// EtcdURL is etcd's client URL.
func (cp *ControlPlane) EtcdURL() string { return cp.etcdURL }

// ServiceAccountSigningKeyFile and ServiceAccountPublicKeyFile are the RSA
// key pair the apiserver signs and verifies ServiceAccount tokens with
// (issuer ServiceAccountIssuer).
func (cp *ControlPlane) ServiceAccountSigningKeyFile() string { return cp.pki.SAPrivateKey }

// ServiceAccountPublicKeyFile: see ServiceAccountSigningKeyFile.
func (cp *ControlPlane) ServiceAccountPublicKeyFile() string { return cp.pki.SAPublicKey }

// RESTConfig returns a fresh admin client configuration.
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: cp.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   cp.pki.CACert,
			CertFile: cp.pki.AdminCert,
			KeyFile:  cp.pki.AdminKey,
		},
		QPS:   100,
		Burst: 200,
	}
}

// HTTPClient returns an http.Client that trusts the CA and authenticates as
// admin; use it with Host.
func (cp *ControlPlane) HTTPClient() *http.Client { return cp.admin }

// TokenRequest is what CreateToken asks for.
type TokenRequest struct {
	// Audiences; empty means the apiserver's default (ServiceAccountIssuer).
	Audiences []string
	// Expiration; 0 means one hour. The apiserver may shorten it.
	Expiration time.Duration
	// BoundPodName and BoundPodUID bind the token to a pod as the kubelet
	// does; optional.
	BoundPodName, BoundPodUID string
}

// CreateToken mints a ServiceAccount token through the TokenRequest API
// (POST .../serviceaccounts/<name>/token), as the kubelet does for a pod.
func (cp *ControlPlane) CreateToken(ctx context.Context, namespace, serviceAccount string, tr TokenRequest) (string, error) {
	if tr.Expiration == 0 {
		tr.Expiration = time.Hour
	}
	spec := map[string]any{"expirationSeconds": int64(tr.Expiration / time.Second)}
	if len(tr.Audiences) > 0 {
		spec["audiences"] = tr.Audiences
	}
	if tr.BoundPodName != "" {
		spec["boundObjectRef"] = map[string]any{"kind": "Pod", "apiVersion": "v1", "name": tr.BoundPodName, "uid": tr.BoundPodUID}
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
	if err != nil {
		return "", err
	}
	url := fmt.Sprintf("%s/api/v1/namespaces/%s/serviceaccounts/%s/token", cp.host, namespace, serviceAccount)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cp.admin.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("testenv: TokenRequest for %s/%s: %s: %s", namespace, serviceAccount, resp.Status, bytes.TrimSpace(respBody))
	}
	var out struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(respBody, &out); err != nil || out.Status.Token == "" {
		return "", fmt.Errorf("testenv: TokenRequest for %s/%s: no token in %q", namespace, serviceAccount, respBody)
	}
	return out.Status.Token, nil
}
