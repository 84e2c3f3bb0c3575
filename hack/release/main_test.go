package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

var fakeBinaries = map[string][]byte{
	"koordinator-linux-amd64":               []byte("\x7fELF fake koordinator for amd64\n"),
	"koordinator-linux-arm64":               []byte("\x7fELF fake koordinator for arm64, longer\n"),
	"kubectl-koordinator-linux-amd64":       []byte("fake plugin linux/amd64\n"),
	"kubectl-koordinator-darwin-arm64":      []byte("fake plugin darwin/arm64\n"),
	"kubectl-koordinator-windows-amd64.exe": []byte("fake plugin windows/amd64\n"),
	"kubectl-koordinator-linux-arm64":       []byte("fake plugin linux/arm64\n"),
	"kubectl-koordinator-darwin-amd64":      []byte("fake plugin darwin/amd64\n"),
}

// fakeDist is what make release has in dist/ before hack/release runs: the binaries and the image
// tarball built from the linux ones, as hack/image writes it (with the same epoch).
func fakeDist(t *testing.T, amd64 []byte) string {
	t.Helper()
	dist := t.TempDir()
	for name, b := range fakeBinaries {
		if err := os.WriteFile(filepath.Join(dist, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := ociimage.Write(filepath.Join(dist, ImageTarball), ociimage.Options{
		Platforms: []ociimage.Platform{{Arch: "amd64", Binary: amd64}, {Arch: "arm64", Binary: fakeBinaries["koordinator-linux-arm64"]}},
		Tags:      []string{ImageName + ":v0.0.0-test"},
		Epoch:     time.Unix(1700000000, 0).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return dist
}

// tree reads every file under dir.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRelease finishes a dist/ of fake binaries with the repository's real manifests: every
// manifest is pinned to the image's index digest and otherwise unchanged, SHA256SUMS covers every
// file (checked with sha256sum -c where it exists), and a second release of the same inputs, in
// another folder, is byte-identical, image tarball included.
func TestRelease(t *testing.T) {
	deploy := filepath.Join("..", "..", "deploy")
	dist := fakeDist(t, fakeBinaries["koordinator-linux-amd64"])
	res, err := Finish(dist, deploy)
	if err != nil {
		t.Fatal(err)
	}
	pinned := ImageName + "@" + res.Index.String()

	sources, _ := filepath.Glob(filepath.Join(deploy, "*.yaml"))
	got := tree(t, dist)
	for _, src := range sources {
		orig, _ := os.ReadFile(src)
		name := "deploy/" + filepath.Base(src)
		out, ok := got[name]
		if !ok {
			t.Errorf("dist lacks %s", name)
			continue
		}
		if bytes.Contains(out, []byte(ImageName+":")) {
			t.Errorf("%s still names %s by tag", name, ImageName)
		}
		if n := bytes.Count(orig, []byte(ImageName+":"+DefaultTag)); bytes.Count(out, []byte(pinned)) != n {
			t.Errorf("%s: %d references pinned to %s, want %d", name, bytes.Count(out, []byte(pinned)), pinned, n)
		}
		if back := bytes.ReplaceAll(out, []byte(pinned), []byte(ImageName+":"+DefaultTag)); !bytes.Equal(back, orig) {
			t.Errorf("%s differs from %s beyond the pinned image", name, src)
		}
	}
	if len(sources) < 6 {
		t.Errorf("%d manifests in deploy/, want them all (at least 6)", len(sources))
	}

	sums := string(got[Checksums])
	lines := strings.Split(strings.TrimSuffix(sums, "\n"), "\n")
	if len(lines) != len(got)-1 {
		t.Errorf("SHA256SUMS has %d lines for %d other files:\n%s", len(lines), len(got)-1, sums)
	}
	for i, f := range res.Files[:len(res.Files)-1] {
		if lines[i] != f.SHA256+"  "+f.Name {
			t.Errorf("SHA256SUMS line %d %q, want %q", i, lines[i], f.SHA256+"  "+f.Name)
		}
	}
	if sha, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(sha, "--check", "--strict", Checksums)
		cmd.Dir = dist
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	} else {
		t.Logf("sha256sum not found: SHA256SUMS checked only against the files' own hashes")
	}

	// Everything again, from the same inputs, somewhere else: the same bytes.
	dist2 := fakeDist(t, fakeBinaries["koordinator-linux-amd64"])
	res2, err := Finish(dist2, deploy)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Index != res.Index {
		t.Errorf("second release: index %s, first %s", res2.Index, res.Index)
	}
	got2 := tree(t, dist2)
	if len(got2) != len(got) {
		t.Errorf("second release has %d files, first %d", len(got2), len(got))
	}
	for name, b := range got {
		if !bytes.Equal(got2[name], b) {
			t.Errorf("%s differs between two releases of the same inputs", name)
		}
	}

	// Finishing the same folder again changes nothing either.
	if _, err := Finish(dist, deploy); err != nil {
		t.Fatal(err)
	}
	for name, b := range tree(t, dist) {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s changed when the release was finished again", name)
		}
	}

	// The pinned base renders as kubectl apply -k would apply it.
	if bins, err := testenv.FindBinaries(""); err == nil {
		out, err := exec.Command(bins.Kubectl, "kustomize", filepath.Join(dist, DeployDir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize dist/deploy: %v", err)
		}
		if !bytes.Contains(out, []byte("image: "+pinned)) || bytes.Contains(out, []byte(ImageName+":")) {
			t.Errorf("kubectl kustomize dist/deploy does not name %s alone:\n%s", pinned, out)
		}
	} else if !errors.Is(err, testenv.ErrNotBuilt) {
		t.Fatal(err)
	}
}

// TestReleaseRefusesStaleImage: an image built from other binaries than dist's is refused, and so
// is a manifest naming the image by a tag other than latest (it could not be pinned).
func TestReleaseRefusesStaleImage(t *testing.T) {
	dist := fakeDist(t, []byte("\x7fELF an older amd64 build\n"))
	if _, err := Finish(dist, filepath.Join("..", "..", "deploy")); err == nil || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("a stale image: %v, want refused naming linux/amd64", err)
	}

	dist = fakeDist(t, fakeBinaries["koordinator-linux-amd64"])
	deploy := t.TempDir()
	if err := os.WriteFile(filepath.Join(deploy, "job.yaml"), []byte("image: "+ImageName+":v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Finish(dist, deploy); err == nil || !strings.Contains(err.Error(), ImageName+":v1") {
		t.Errorf("a manifest with %s:v1: %v, want refused", ImageName, err)
	}
}

// TestKrewArchives: every plugin binary is packed into the archive the krew manifest
// (plugins/koordinator.yaml) names, holding exactly the binary under the manifest's bin name.
func TestKrewArchives(t *testing.T) {
	dist := fakeDist(t, fakeBinaries["koordinator-linux-amd64"])
	if _, err := Finish(dist, filepath.Join("..", "..", "deploy")); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "..", "plugins", "koordinator.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	packed := 0
	for name, want := range fakeBinaries {
		if !strings.HasPrefix(name, pluginPrefix) {
			continue
		}
		platform, exe := strings.CutSuffix(strings.TrimPrefix(name, pluginPrefix), ".exe")
		archive := pluginPrefix + platform + ".tar.gz"
		if !bytes.Contains(manifest, []byte("/"+archive+`"`)) {
			t.Errorf("the krew manifest names no %s", archive)
		}
		f, err := os.Open(filepath.Join(dist, archive))
		if err != nil {
			t.Error(err)
			continue
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		tr := tar.NewReader(zr)
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		bin := "kubectl-koordinator"
		if exe {
			bin += ".exe"
		}
		got, _ := io.ReadAll(tr)
		if hdr.Name != bin || hdr.Mode != 0o755 || !hdr.ModTime.Equal(time.Unix(0, 0)) || !bytes.Equal(got, want) {
			t.Errorf("%s holds %s (mode %o, time %v, %d bytes), want %s, 0755, no time, the binary", archive, hdr.Name, hdr.Mode, hdr.ModTime, len(got), bin)
		}
		if _, err := tr.Next(); err != io.EOF {
			t.Errorf("%s holds more than the binary", archive)
		}
		packed++
	}
	if packed != 5 {
		t.Errorf("%d archives, want one per plugin binary (5)", packed)
	}
}
