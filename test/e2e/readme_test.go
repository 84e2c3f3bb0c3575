package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

// installBlocks returns the ```sh blocks of the README's "## Install" section: step 1 for a
// registry, for kind and for containerd, then step 2.
func installBlocks(t *testing.T) (registryBlock, kindBlock, containerdBlock, deployBlock string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Install\n")
	if !ok {
		t.Fatal("README.md has no ## Install section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	if len(blocks) != 4 {
		t.Fatalf("README Install has %d sh blocks, want 4 (registry, kind, containerd, step 2)", len(blocks))
	}
	for _, blk := range blocks {
		if out, err := exec.Command("bash", "-n", "-c", blk[1]).CombinedOutput(); err != nil {
			t.Errorf("bash -n:\n%s\n%v %s", blk[1], err, out)
		}
	}
	registryBlock, kindBlock, containerdBlock, deployBlock = blocks[0][1], blocks[1][1], blocks[2][1], blocks[3][1]
	for _, c := range []struct{ block, want string }{
		{registryBlock, "make push IMAGE="}, {kindBlock, "kind load image-archive"},
		{containerdBlock, "ctr -n k8s.io images import"}, {deployBlock, "kubectl apply"},
	} {
		if !strings.Contains(c.block, c.want) {
			t.Fatalf("README Install block does not hold %q where expected:\n%s", c.want, c.block)
		}
	}
	return
}

// readmeShell runs README blocks with bash in a fresh folder that has deploy/ (a link to the
// repository's), as the user's clone does, with stand-ins first in PATH: kubectl is the control
// plane's against it; make is the real make in the repository, where push does not rebuild the image
// (it pushes IMAGE_TAR) and anything else is a dry run whose output is kept; kind, ctr and sudo
// record their arguments (kind and ctr are not installed here).
type readmeShell struct {
	dir, log, dryRun string
	env              []string
}

func newReadmeShell(t *testing.T, imageTar string) *readmeShell {
	t.Helper()
	dir, bin := t.TempDir(), t.TempDir()
	if err := os.Symlink(filepath.Join(repoRoot, "deploy"), filepath.Join(dir, "deploy")); err != nil {
		t.Fatal(err)
	}
	realMake, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("make not found: %v", err)
	}
	sh := &readmeShell{dir: dir, log: filepath.Join(bin, "log"), dryRun: filepath.Join(bin, "dry-run")}
	stubs := map[string]string{
		"kubectl": fmt.Sprintf("exec %q --kubeconfig %q \"$@\"", cp.Binaries().Kubectl, cp.Kubeconfig()),
		"make": fmt.Sprintf(`echo "make $*" >> %[1]q
case " $* " in
  *" push "*) IMAGE_TAR=%[4]q exec %[2]q -C %[3]q -o image "$@" ;;
  *) exec %[2]q -C %[3]q -n "$@" >> %[5]q ;;
esac`, sh.log, realMake, repoRoot, imageTar, sh.dryRun),
		"kind": fmt.Sprintf(`echo "kind $*" >> %q`, sh.log),
		"ctr":  fmt.Sprintf(`echo "ctr $*" >> %q`, sh.log),
		"sudo": fmt.Sprintf(`echo "sudo $*" >> %q; exec "$@"`, sh.log),
	}
	for n, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sh.env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	return sh
}

func (sh *readmeShell) run(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-c", "set -euo pipefail\n"+script)
	cmd.Dir, cmd.Env = sh.dir, sh.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("README commands failed: %v\n%s\n--- output:\n%s", err, script, out.String())
	}
	return out.String()
}

func (sh *readmeShell) read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// readmeDeploy is step 2 for this test: the README's namespace replaced with a fresh one, deleted
// at the test's end, and without its last line, kubectl logs, which needs the kubelet's API that
// the test node does not serve: checkLogs reads main's log from the node instead.
func readmeDeploy(t *testing.T, block string) (script, ns string) {
	t.Helper()
	ns = "e2e-readme-" + rand.String(5)
	t.Cleanup(func() {
		_ = client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	if !strings.Contains(block, "koordinator-try") {
		t.Fatal("README step 2 no longer uses namespace koordinator-try")
	}
	const logs = "kubectl logs -n koordinator-try job/koordinator-example -c main\n"
	if !strings.HasSuffix(block, logs) {
		t.Fatalf("README step 2 no longer ends with %q", logs)
	}
	return strings.ReplaceAll(strings.TrimSuffix(block, logs), "koordinator-try", ns), ns
}

// checkLogs: what the README's kubectl logs line would print, main's output.
func checkLogs(t *testing.T, ns string) {
	t.Helper()
	pod := jobPod(t, ns, "koordinator-example")
	if out := nd.Logs(ns, pod.Name, "main"); !strings.Contains(out, "main: done") {
		t.Errorf("main's log lacks \"main: done\":\n%s", out)
	}
}

// TestReadmeInstall runs the README's Install commands as they are written. Step 1 for a registry
// pushes, with the real make push, to go-containerregistry's in-process registry standing for
// registry.example.com (the image tarball is hack/image's from the freshly built linux/amd64
// binary, one platform: make test does not cross-build arm64), and the image is pulled back by
// the README's tag. Step 2 then applies the overlay with kubectl apply -k and waits for the Job, as
// the README does; the test node maps the pushed name (a repository named koordinator) to the
// fresh binary and never pulls. kind and ctr are not installed here: their blocks run with
// stand-ins that record their arguments, make image as a dry run; step 2 runs once more with the
// kind block's IMAGE.
func TestReadmeInstall(t *testing.T) {
	parallel(t)
	registryBlock, kindBlock, containerdBlock, deployBlock := installBlocks(t)

	imageTar := filepath.Join(t.TempDir(), "koordinator-image.tar")
	build := exec.Command("go", "run", "./hack/image", "-amd64", koordinatorBinary, "-tag", "koordinator:e2e", "-o", imageTar)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, out)
	}

	t.Run("registry", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(discardLog())))
		defer srv.Close()
		host := strings.TrimPrefix(srv.URL, "http://")
		if !strings.Contains(registryBlock, "registry.example.com/") {
			t.Fatal("README's registry block no longer names registry.example.com")
		}
		sh := newReadmeShell(t, imageTar)
		deploy, ns := readmeDeploy(t, deployBlock)
		out := sh.run(t, strings.ReplaceAll(registryBlock, "registry.example.com", host)+deploy)
		t.Logf("README commands printed:\n%s", out)
		m := regexp.MustCompile(`(?m)^IMAGE=registry\.example\.com/(\S+)$`).FindStringSubmatch(registryBlock)
		if m == nil {
			t.Fatalf("no IMAGE=registry.example.com/... line in:\n%s", registryBlock)
		}
		ref, err := name.ParseReference(host + "/" + m[1])
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(ref)
		if err != nil {
			t.Fatalf("the registry does not hold %s: %v", ref, err)
		}
		digest, _ := idx.Digest()
		if !strings.Contains(out, "digest: "+digest.String()) {
			t.Errorf("make push did not print the digest %s", digest)
		}
		checkLogs(t, ns)
	})

	tagged := regexp.MustCompile(`(?m)^IMAGE=(\S+)$`)
	for _, c := range []struct{ name, block, want string }{
		{"kind", kindBlock, "kind load image-archive "},
		{"containerd", containerdBlock, "ctr -n k8s.io images import "},
	} {
		t.Run(c.name, func(t *testing.T) {
			sh := newReadmeShell(t, imageTar)
			script, ns := c.block, ""
			if c.name == "kind" {
				var deploy string
				deploy, ns = readmeDeploy(t, deployBlock)
				script += deploy
			}
			out := sh.run(t, script)
			t.Logf("README commands printed:\n%s", out)
			m := tagged.FindStringSubmatch(c.block)
			if m == nil {
				t.Fatalf("no IMAGE= line in:\n%s", c.block)
			}
			// make image VERSION=... (dry run) tags the image as IMAGE says and writes the tarball
			// the next command loads.
			dry := sh.read(t, sh.dryRun)
			tarball := regexp.MustCompile(`-tag (\S+) -o (\S+)`).FindStringSubmatch(dry)
			if tarball == nil || tarball[1] != m[1] {
				t.Fatalf("make image (dry run) does not tag the image %s:\n%s", m[1], dry)
			}
			if log := sh.read(t, sh.log); !strings.Contains(log, c.want+tarball[2]+"\n") {
				t.Errorf("want %q%s run; the stand-ins saw:\n%s", c.want, tarball[2], log)
			}
			if ns != "" {
				checkLogs(t, ns)
			}
		})
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
