package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// containerdConfig is containerd's configuration (version 3, containerd 2.x): every root, state
// and socket under dir; runc by its built path; the CNI plugins and their configuration; images
// from the node's registry (hostsFiles); the pause image as the sandbox; NRI off (it would use
// /var/run/nri); oom_score_adj restricted (the root shell here lacks CAP_SYS_RESOURCE).
func containerdConfig(dir string, p paths, v versions) string {
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[5]q
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = %[6]q

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = %[7]q
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = [%[8]q]
    conf_dir = %[9]q

[plugins."io.containerd.nri.v1.nri"]
  disable = true
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "containerd.ttrpc.sock"), v.pauseImage, filepath.Join(dir, "certs.d"),
		p.runc, p.cniDir, filepath.Join(dir, "net.d"))
}

// cniConfig attaches each pod to the bridge that holds the node's address, with addresses from
// podSubnet (kept under dir) and a default route through the node.
func cniConfig(dir string) string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "koordinator-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, bridgeName, podSubnet, nodeIP, filepath.Join(dir, "ipam"))
}

func (n *Node) startContainerd(ctx context.Context) error {
	dir := filepath.Join(n.dir, "containerd")
	for _, d := range []string{dir, filepath.Join(dir, "net.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := hostsFiles(filepath.Join(dir, "certs.d")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "net.d", "10-koordinator-test.conflist"), []byte(cniConfig(dir)), 0o644); err != nil {
		return err
	}
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, []byte(containerdConfig(dir, n.opts.paths, n.opts.versions)), 0o644); err != nil {
		return err
	}
	// The shim is found on PATH, next to containerd.
	path := "PATH=" + filepath.Dir(n.opts.paths.containerd) + ":" + os.Getenv("PATH")
	d, err := testenv.StartDaemon("containerd", n.opts.paths.containerd, []string{"--config", config}, []string{path}, dir, filepath.Join(n.dir, "containerd.log"))
	if err != nil {
		return err
	}
	n.containerd = d
	sock := filepath.Join(dir, "containerd.sock")
	deadline := time.Now().Add(time.Minute)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return nil
		}
		if d.Exited() {
			return d.Failure(errors.New("exited before its socket answered"))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return d.Failure(errors.New("its socket does not answer"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kubeletConfig is the KubeletConfiguration: cgroup v1 allowed (these machines run the hybrid
// hierarchy), the cgroupfs driver (no systemd), protectKernelDefaults (the namespace shows the
// settings it wants, so it never writes the host's), the apiserver's CA for client
// certificates, and eviction thresholds low enough that a busy 2-core test machine never
// evicts a scenario's pod.
func kubeletConfig(dir, caFile, runtimeSock string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
failCgroupV1: false
cgroupDriver: cgroupfs
protectKernelDefaults: true
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
volumePluginDir: %[3]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]s
authorization:
  mode: Webhook
serializeImagePulls: false
kubeAPIQPS: 50
kubeAPIBurst: 100
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
resolvConf: /etc/resolv.conf
`, nodeIP, runtimeSock, filepath.Join(dir, "volume-plugins"), caFile)
}

func (n *Node) startKubelet(ctx context.Context, cp *testenv.ControlPlane) error {
	dir := filepath.Join(n.dir, "kubelet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	config := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(config, []byte(kubeletConfig(dir, cp.CAFile(), filepath.Join(n.dir, "containerd", "containerd.sock"))), 0o644); err != nil {
		return err
	}
	args := []string{
		"--config=" + config,
		"--kubeconfig=" + cp.Kubeconfig(),
		"--root-dir=" + filepath.Join(dir, "root"),
		"--node-ip=" + nodeIP,
		"--hostname-override=" + NodeName,
		"--v=2",
	}
	d, err := testenv.StartDaemon("kubelet", n.opts.paths.kubelet, args, nil, dir, filepath.Join(n.dir, "kubelet.log"))
	if err != nil {
		return err
	}
	n.kubelet = d
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return n.waitNodeReady(ctx, d)
}

// LogFile is the path of a component's log ("containerd" or "kubelet"), for failures.
func (n *Node) LogFile(component string) string {
	return filepath.Join(n.dir, strings.ToLower(component)+".log")
}

// Dir is the node's folder: under the repo's .cache, on the host's disk.
func (n *Node) Dir() string { return n.dir }
