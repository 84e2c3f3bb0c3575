package kubelet

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/koordinator-dev/koordinator/test/proctest"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

// envInside marks the re-executed process that runs inside the node's namespaces, and names the
// folder it keeps its files in.
const envInside = "KOORDINATOR_KUBELET_NODE_DIR"

// The node's network, private to its namespace: the bridge the CNI plugin attaches pods to, the
// node's address on it, and the kubernetes Service's address, which a forwarder serves.
const (
	bridgeName = "cni0"
	nodeIP     = "10.88.77.1"
	podSubnet  = "10.88.77.0/24"
	serviceIP  = "10.0.0.1"
	// NodeName is the Node the kubelet registers.
	NodeName = "kubelet-node"
)

// Inside reports whether this process is PID 1 of the node's namespaces, started by RunInside.
func Inside() bool { return os.Getenv(envInside) != "" && os.Getpid() == 1 }

// Dir is, inside, the folder RunInside gave the node for its files.
func Dir() string { return os.Getenv(envInside) }

// RunInside runs the current executable again, with the same arguments, as PID 1 of a new mount,
// network, PID and UTS namespace, and returns its exit code. A fresh folder under the repo's
// .cache holds the node's files; RunInside removes it once the namespace is gone (never before:
// containers' mounts point into it). Everything started in there dies
// with it: the kernel ends a PID namespace's processes when its PID 1 exits, and the namespace's
// mounts and network go with them. What the kubelet writes into the host's shared cgroup
// hierarchies (the kubepods cgroups, empty once the namespace is gone) is removed afterwards, and
// the host is then compared with how it was before: a difference is an error.
func RunInside(stdout, stderr io.Writer, logf func(string, ...any)) (int, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(filepath.Join(root, ".cache"), "kubelet-node-")
	if err != nil {
		return 0, err
	}
	before, err := takeHostState()
	if err != nil {
		return 0, fmt.Errorf("reading the host's state: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInside+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWPID | unix.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	// Pdeathsig fires when the forking thread ends: keep this goroutine on it until the wait.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting the node's namespaces: %w", err)
	}
	pidNS := proctest.PIDNamespace(cmd.Process.Pid)
	runErr := cmd.Wait()
	code := 0
	if runErr != nil {
		if ee, ok := runErr.(*exec.ExitError); ok {
			code = ee.ExitCode()
			if code < 0 {
				code = 1
			}
		} else {
			return 0, fmt.Errorf("starting the node's namespaces: %w", runErr)
		}
	}
	if left := processesIn(pidNS); len(left) > 0 {
		return code, fmt.Errorf("processes of the node's namespace still run: %v", left)
	}
	if err := os.RemoveAll(dir); err != nil {
		return code, fmt.Errorf("removing the node's folder: %w", err)
	}
	removed, err := removeKubepodsCgroups(before)
	if err != nil {
		return code, err
	}
	logf("kubelet node: removed %d cgroups the kubelet made in the host's hierarchies", removed)
	after, err := takeHostState()
	if err != nil {
		return code, fmt.Errorf("reading the host's state: %w", err)
	}
	if diff := before.diff(after); len(diff) > 0 {
		return code, fmt.Errorf("the real node left the host changed:\n  %s", strings.Join(diff, "\n  "))
	}
	logf("kubelet node: the host is as it was (no process of the namespace left; mounts, kernel settings, network devices, iptables tables, host paths, cgroups unchanged)")
	return code, nil
}

// enterPrivateWorld makes the namespaces RunInside created fit for a kubelet and containerd:
// nothing mounted here propagates to the host; a /proc of the new PID namespace with the three
// kernel settings the kubelet insists on shown as it wants them (it refuses to start otherwise
// with protectKernelDefaults, and would write them on the host without it); fresh tmpfs over
// the folders the kubelet, containerd and the shims write whatever their configured roots say
// (/run, /var/lib, /var/log); a private /etc/hosts naming the node; loopback, the bridge holding
// the node's address, and the Service address on loopback. dir is a private folder for files.
func enterPrivateWorld(dir string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	for _, p := range []string{"/run", "/var/lib", "/var/log"} {
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", p, err)
		}
	}
	settings := map[string]string{
		"/proc/sys/vm/overcommit_memory": "1",
		"/proc/sys/kernel/panic":         "10",
		"/proc/sys/kernel/panic_on_oops": "1",
	}
	for path, value := range settings {
		f := filepath.Join(dir, "sysctl-"+filepath.Base(path))
		if err := os.WriteFile(f, []byte(value+"\n"), 0o444); err != nil {
			return err
		}
		if err := unix.Mount(f, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("showing %s as %s: %w", path, value, err)
		}
	}
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"+nodeIP+" "+NodeName+"\n"), 0o644); err != nil {
		return err
	}
	if err := unix.Mount(hosts, "/etc/hosts", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("a private /etc/hosts: %w", err)
	}
	if err := unix.Sethostname([]byte(NodeName)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", serviceIP + "/32", "dev", "lo"},
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", nodeIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
		{"route", "add", "default", "dev", bridgeName},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// processesIn lists the processes whose PID namespace is pidNS (a /proc/PID/ns/pid link).
func processesIn(pidNS string) []int {
	var out []int
	for _, st := range proctest.All() {
		if pidNS != "" && st.PIDNamespace() == pidNS {
			out = append(out, st.Pid)
		}
	}
	return out
}
