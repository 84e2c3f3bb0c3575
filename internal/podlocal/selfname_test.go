package podlocal

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNameFromMountInfo(t *testing.T) {
	const (
		rootfs = "2750 2690 0:283 / / rw,relatime master:1040 - overlay overlay rw,lowerdir=/x,upperdir=/y,workdir=/z\n"
		proc   = "2751 2750 0:286 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
		hosts  = "2760 2750 254:1 /var/lib/kubelet/pods/6a1c4c1e-5d0f-4a5e-9d4c-0e7f6e1b2c3d/etc-hosts /etc/hosts rw,relatime - ext4 /dev/vda1 rw\n"
		vol    = "2761 2750 254:1 /var/lib/kubelet/pods/6a1c4c1e-5d0f-4a5e-9d4c-0e7f6e1b2c3d/volumes/kubernetes.io~empty-dir/koordinator /koordinator rw,relatime - ext4 /dev/vda1 rw\n"
	)
	termLog := func(root string) string {
		return "2762 2750 254:1 " + root + " /dev/termination-log rw,relatime - ext4 /dev/vda1 rw\n"
	}
	tests := []struct {
		name      string
		mountinfo string
		point     string
		want      string
	}{
		{"kubelet on the root filesystem", rootfs + proc + hosts + vol +
			termLog("/var/lib/kubelet/pods/6a1c4c1e-5d0f-4a5e-9d4c-0e7f6e1b2c3d/containers/cloud-sql-proxy/7f3a9b2c"), TerminationLogPath, "cloud-sql-proxy"},
		{"kubelet folder on its own filesystem", rootfs +
			termLog("/pods/6a1c4c1e/containers/main/0a1b2c3d"), TerminationLogPath, "main"},
		{"optional fields before the separator", "2762 2750 254:1 /pods/u/containers/main/0a1b /dev/termination-log rw,relatime shared:5 master:7 - ext4 /dev/vda1 rw\n", TerminationLogPath, "main"},
		{"a custom terminationMessagePath", rootfs + "2762 2750 254:1 /pods/u/containers/job/abcd /tmp/termination\\040log rw - ext4 /dev/vda1 rw\n", "/tmp/termination log", "job"},
		{"the last mount at the point wins", rootfs + termLog("/pods/u/containers/old/1") + termLog("/pods/u/containers/new/2"), TerminationLogPath, "new"},
		{"no trailing newline", termLog("/pods/u/containers/main/1")[:len(termLog("/pods/u/containers/main/1"))-1], TerminationLogPath, "main"},

		{"empty", "", TerminationLogPath, ""},
		{"no termination-log mount (outside Kubernetes)", rootfs + proc + hosts + vol, TerminationLogPath, ""},
		{"the name is in another mount only", rootfs + "2762 2750 254:1 /pods/u/containers/main/1 /mnt rw - ext4 /dev/vda1 rw\n", TerminationLogPath, ""},
		{"root without the kubelet's shape", rootfs + termLog("/some/file"), TerminationLogPath, ""},
		{"root ends in the container folder", rootfs + termLog("/pods/u/containers/main/"), TerminationLogPath, ""},
		{"deeper than the kubelet makes it", rootfs + termLog("/pods/u/containers/main/x/y"), TerminationLogPath, ""},
		{"not a container name", rootfs + termLog("/pods/u/containers/Main_1/x"), TerminationLogPath, ""},
		{"escaped name is not a container name", rootfs + termLog("/pods/u/containers/a\\040b/x"), TerminationLogPath, ""},
		{"short lines", "1 2 3\n\n - \n", TerminationLogPath, ""},
		{"root is /", rootfs + termLog("/"), TerminationLogPath, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := NameFromMountInfo([]byte(tt.mountinfo), tt.point)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("NameFromMountInfo = (%q, %v), want %q", got, ok, tt.want)
			}
		})
	}
}

func TestNameFromMountInfoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(path, []byte("9 1 0:1 /pods/u/containers/main/1 /dev/termination-log rw - ext4 /dev/vda1 rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if name, ok := NameFromMountInfoFile(path, TerminationLogPath); !ok || name != "main" {
		t.Errorf("got (%q, %v), want main", name, ok)
	}
	if _, ok := NameFromMountInfoFile(filepath.Join(t.TempDir(), "missing"), TerminationLogPath); ok {
		t.Error("a missing file gave a name")
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`: "/a b", `/a\011b\012c\134d`: "/a\tb\nc\\d", `/plain`: "/plain", `/end\04`: `/end\04`, `/x\999`: `/x\999`, `\`: `\`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}
