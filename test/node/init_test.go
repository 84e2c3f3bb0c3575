package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// runInstance runs one container instance from spec without an API server
// and returns its exit code and output.
func runInstance(t *testing.T, spec *initSpec) (int32, string, *instance) {
	t.Helper()
	dir := unitDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{exe: exe}
	inst := &instance{id: newID(), container: "c", logPath: filepath.Join(dir, "c.log")}
	exited := make(chan *instance, 1)
	if err := n.startInstance(filepath.Join(dir, "run"), spec, inst, func(i *instance) { exited <- i }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		inst.signal(9)
		t.Fatal("instance did not exit within 60 s")
	}
	lines, err := ReadLogFile(inst.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text + "\n")
	}
	return inst.exitCode, b.String(), inst
}

// unitDir is a fresh folder under the repository's .cache/node (tests write
// nothing elsewhere), removed at the end of the test.
func unitDir(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, ".cache", "node"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(filepath.Join(root, ".cache", "node"), "unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestInitStep checks the container root: PID 1, read-only system folders,
// an /etc overlay with a new mount point, a bound volume, nothing on the host.
func TestInitStep(t *testing.T) {
	vol := filepath.Join(unitDir(t), "vol")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "name"), []byte("pod-a"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `echo pid=$$
echo hostname=$(hostname)
cat /etc/podinfo/name; echo
touch /usr/x 2>/dev/null && echo usr-writable || echo usr-readonly
touch /etc/new && echo etc-writable
echo hello > /tmp/t && cat /tmp/t
ls /proc | grep -c '^[0-9]' | sed 's/^/procs=/'
test -e /.oldroot && echo oldroot-visible
echo env=$FOO
exit 3`
	code, out, _ := runInstance(t, &initSpec{
		SystemDirs: hostSystemDirs,
		OverlayEtc: true,
		Binds:      []bindMount{{Source: vol, Target: "/etc/podinfo", ReadOnly: true}},
		Hostname:   "pod-a",
		Argv:       []string{"sh", "-c", script},
		Env:        []string{"PATH=" + defaultPath, "FOO=bar"},
	})
	t.Logf("output:\n%s", out)
	if code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	for _, want := range []string{"pid=1\n", "hostname=pod-a\n", "pod-a\n", "usr-readonly\n", "etc-writable\n", "hello\n", "env=bar\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "oldroot-visible") {
		t.Error("the host's root is still visible inside")
	}
	if _, err := os.Stat("/etc/new"); err == nil {
		t.Error("/etc/new was written on the host")
	}
}

func TestInitStepCommandNotFound(t *testing.T) {
	code, out, inst := runInstance(t, &initSpec{
		SystemDirs: hostSystemDirs,
		Argv:       []string{"no-such-command"},
		Env:        []string{"PATH=" + defaultPath},
	})
	if code != startErrorExitCode || !strings.Contains(inst.startError, "no-such-command") {
		t.Errorf("code %d, start error %q, output %q", code, inst.startError, out)
	}
}
