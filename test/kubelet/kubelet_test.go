package kubelet

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestVersionsArePinned(t *testing.T) {
	v := readVersions()
	for name, got := range map[string]string{"containerd": v.containerd, "runc": v.runc, "CNI plugins": v.cniPlugins} {
		if !strings.HasPrefix(got, "v") || strings.Count(got, ".") != 2 {
			t.Errorf("%s version %q is not an exact vX.Y.Z", name, got)
		}
	}
	if !strings.Contains(v.pauseImage, "/pause:") {
		t.Errorf("pause image %q", v.pauseImage)
	}
	// The build script reads the same file.
	script, err := os.ReadFile(filepath.Join("..", "..", "hack", "build-kubelet-node.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "test/kubelet/versions.env") {
		t.Error("hack/build-kubelet-node.sh no longer reads test/kubelet/versions.env")
	}
}

func TestHostStateDiff(t *testing.T) {
	before := &hostState{
		mounts:   []string{"/ (ext4)", "/proc (proc)"},
		settings: map[string]string{"/proc/sys/vm/overcommit_memory": "0", "/proc/sys/net/ipv4/ip_forward": "0"},
		devices:  []string{"eth0", "lo"},
		paths:    map[string]bool{"/var/lib/kubelet": false, "/run/containerd": false},
		cgroups:  map[string]bool{},
	}
	same := *before
	if d := before.diff(&same); len(d) != 0 {
		t.Fatalf("an unchanged host differs: %v", d)
	}
	after := &hostState{
		mounts:   []string{"/ (ext4)", "/proc (proc)", "/work/main/.cache/kubelet-node-1/kubelet/root (ext4)"},
		settings: map[string]string{"/proc/sys/vm/overcommit_memory": "1", "/proc/sys/net/ipv4/ip_forward": "0"},
		devices:  []string{"cni0", "eth0", "lo"},
		tables:   "filter",
		paths:    map[string]bool{"/var/lib/kubelet": true, "/run/containerd": false},
		cgroups:  map[string]bool{"/sys/fs/cgroup/memory/kubepods": true},
	}
	want := []string{
		"/var/lib/kubelet: exists=true, was false",
		"cgroup left: /sys/fs/cgroup/memory/kubepods",
		`iptables tables: "filter", were ""`,
		`kernel setting /proc/sys/vm/overcommit_memory: "1", was "0"`,
		"new mount: /work/main/.cache/kubelet-node-1/kubelet/root (ext4)",
		"new network device: cni0",
	}
	if got := before.diff(after); !reflect.DeepEqual(got, want) {
		t.Errorf("diff:\n got %q\nwant %q", got, want)
	}
}

func TestRestartOf(t *testing.T) {
	for path, want := range map[string]int{"/var/log/pods/ns_p_uid/main/0.log": 0, "/x/main/12.log": 12} {
		if got := restartOf(path); got != want {
			t.Errorf("restartOf(%s) = %d, want %d", path, got, want)
		}
	}
}

func TestLocalRef(t *testing.T) {
	for image, want := range map[string]string{
		"busybox:1.37": registryAddr + "/library/busybox:1.37",
		"ghcr.io/koordinator-dev/koordinator:latest": registryAddr + "/koordinator-dev/koordinator:latest",
		"registry.k8s.io/pause:3.10.1":               registryAddr + "/pause:3.10.1",
	} {
		ref, err := localRef(image)
		if err != nil {
			t.Fatal(err)
		}
		if ref.String() != want {
			t.Errorf("localRef(%s) = %s, want %s", image, ref, want)
		}
	}
}
