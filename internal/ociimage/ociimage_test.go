package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testEpoch = time.Unix(1700000000, 0).UTC()

func fakeOptions() Options {
	return Options{
		Platforms: []Platform{
			{Arch: "amd64", Binary: []byte("\x7fELF fake koordinator for amd64\n")},
			{Arch: "arm64", Binary: []byte("\x7fELF fake koordinator for arm64, a little longer\n")},
		},
		Tags:  []string{"koordinator:test", "ghcr.io/koordinator-dev/koordinator:latest"},
		Epoch: testEpoch,
	}
}

// TestImage builds the image twice from fake binaries and reads the tarball back the ways its
// consumers do: as an OCI image layout (containerd, kind, Docker's containerd store) and as a
// docker-archive through manifest.json (Docker's classic store).
func TestImage(t *testing.T) {
	dir := t.TempDir()
	opts := fakeOptions()
	out1, out2 := filepath.Join(dir, "1.tar"), filepath.Join(dir, "2.tar")
	res, err := Write(out1, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(out2, opts); err != nil {
		t.Fatal(err)
	}
	b1, _ := os.ReadFile(out1)
	b2, _ := os.ReadFile(out2)
	if !bytes.Equal(b1, b2) {
		t.Fatal("two builds of the same binaries differ")
	}
	if res.FileSize != int64(len(b1)) {
		t.Errorf("Result.FileSize %d, file has %d bytes", res.FileSize, len(b1))
	}

	// The tarball's own entries: an OCI layout plus manifest.json, all 0:0 at the epoch.
	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b1))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(testEpoch) {
			t.Errorf("%s: owner %d:%d mtime %s", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		data, _ := io.ReadAll(tr)
		entries[h.Name] = data
	}
	for _, n := range []string{"oci-layout", "index.json", "manifest.json", "blobs/", "blobs/sha256/"} {
		if _, ok := entries[n]; !ok {
			t.Errorf("tarball lacks %s", n)
		}
	}
	// index, 2 manifests, 2 configs, 2 layers
	if blobs := len(entries) - 5; blobs != 7 {
		t.Errorf("%d blobs, want 7", blobs)
	}

	layoutDir := filepath.Join(dir, "layout")
	for n, data := range entries {
		p := filepath.Join(layoutDir, filepath.FromSlash(n))
		if n[len(n)-1] == '/' {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	top, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 2 {
		t.Fatalf("index.json has %d entries, want one per tag (2)", len(topManifest.Manifests))
	}
	wantNames := []map[string]string{
		{annotationImageName: "docker.io/library/koordinator:test", annotationRefName: "test"},
		{annotationImageName: "ghcr.io/koordinator-dev/koordinator:latest", annotationRefName: "latest"},
	}
	for i, d := range topManifest.Manifests {
		if d.MediaType != types.OCIImageIndex || d.Digest != res.Index {
			t.Errorf("index.json entry %d: %s %s, want %s %s", i, d.MediaType, d.Digest, types.OCIImageIndex, res.Index)
		}
		if !reflect.DeepEqual(d.Annotations, wantNames[i]) {
			t.Errorf("index.json entry %d annotations %v, want %v", i, d.Annotations, wantNames[i])
		}
	}

	idx, err := top.ImageIndex(res.Index)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		platforms = append(platforms, d.Platform.String())
		if d.MediaType != types.OCIManifestSchema1 || d.ArtifactType != "" {
			t.Errorf("%s: media type %s, artifactType %q; want an OCI image manifest, no artifactType",
				d.Platform, d.MediaType, d.ArtifactType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		arch := d.Platform.Architecture
		checkImage(t, img, arch, binaryOf(opts, arch))
	}
	sort.Strings(platforms)
	if want := []string{"linux/amd64", "linux/arm64"}; !reflect.DeepEqual(platforms, want) {
		t.Errorf("platforms %v, want %v", platforms, want)
	}

	// manifest.json: Docker's classic store loads the amd64 image (the first) under both tags.
	var dm tarball.Manifest
	if err := json.Unmarshal(entries["manifest.json"], &dm); err != nil {
		t.Fatal(err)
	}
	if len(dm) != 1 || !reflect.DeepEqual(dm[0].RepoTags, []string{"koordinator:test", "ghcr.io/koordinator-dev/koordinator:latest"}) {
		t.Fatalf("manifest.json %+v", dm)
	}
	for _, tagStr := range dm[0].RepoTags {
		tag, err := name.NewTag(tagStr)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out1, &tag)
		if err != nil {
			t.Fatalf("docker-archive %s: %v", tagStr, err)
		}
		checkImage(t, img, "amd64", binaryOf(opts, "amd64"))
	}
}

func binaryOf(opts Options, arch string) []byte {
	for _, p := range opts.Platforms {
		if p.Arch == arch {
			return p.Binary
		}
	}
	return nil
}

// checkImage: the config says what the Dockerfile says, and the one layer holds exactly
// bin/koordinator, 0755, 0:0, with the binary's bytes.
func checkImage(t *testing.T, img v1.Image, arch string, bin []byte) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("%s: config platform %s/%s", arch, cf.OS, cf.Architecture)
	}
	if !cf.Created.Equal(testEpoch) {
		t.Errorf("%s: created %s, want %s", arch, cf.Created.Time, testEpoch)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("%s: user %q", arch, c.User)
	}
	if want := []string{"/bin/koordinator", "--install"}; !reflect.DeepEqual(c.Entrypoint, want) {
		t.Errorf("%s: entrypoint %q, want %q", arch, c.Entrypoint, want)
	}
	if c.Cmd != nil {
		t.Errorf("%s: cmd %q, want none", arch, c.Cmd)
	}
	if cf.RootFS.Type != "layers" || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("%s: rootfs %+v", arch, cf.RootFS)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%s: %d layers, want 1", arch, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name != "bin/koordinator" {
			continue
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: bin/koordinator type %c mode %o owner %d:%d, want regular 0755 0:0",
				arch, h.Typeflag, h.Mode, h.Uid, h.Gid)
		}
		if !h.ModTime.Equal(testEpoch) {
			t.Errorf("%s: bin/koordinator mtime %s", arch, h.ModTime)
		}
		got, _ := io.ReadAll(tr)
		if !bytes.Equal(got, bin) {
			t.Errorf("%s: bin/koordinator holds %q, want %q", arch, got, bin)
		}
	}
	if !reflect.DeepEqual(names, []string{"bin/koordinator"}) {
		t.Errorf("%s: layer holds %q, want exactly bin/koordinator", arch, names)
	}
}

// TestDockerArch: -docker-arch arm64 points manifest.json at the arm64 image and leaves the
// OCI layout (the multi-arch index) as it was.
func TestDockerArch(t *testing.T) {
	dir := t.TempDir()
	opts := fakeOptions()
	def, err := Write(filepath.Join(dir, "amd64.tar"), opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.DockerArch = "arm64"
	out := filepath.Join(dir, "arm64.tar")
	res, err := Write(out, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Index != def.Index {
		t.Errorf("index %s, want %s as without -docker-arch", res.Index, def.Index)
	}
	img, err := tarball.ImageFromPath(out, nil) // manifest.json holds one image
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, "arm64", binaryOf(opts, "arm64"))

	opts.DockerArch = "s390x"
	if _, err := Write(filepath.Join(dir, "s390x.tar"), opts); err == nil {
		t.Error("-docker-arch s390x accepted for an amd64+arm64 image")
	}
}

// TestOpen reads back what Write wrote: the multi-arch index, whatever the number of tags; a tar
// with an entry that leaves its folder is refused.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "image.tar")
	res, err := Write(out, fakeOptions())
	if err != nil {
		t.Fatal(err)
	}
	idx, cleanup, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if d, _ := idx.Digest(); d != res.Index {
		t.Errorf("Open gives index %s, Write wrote %s", d, res.Index)
	}
	img, err := idx.Image(res.Images[1].Manifest)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img, "arm64", binaryOf(fakeOptions(), "arm64"))

	evil := filepath.Join(dir, "evil.tar")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644})
	_ = tw.Close()
	if err := os.WriteFile(evil, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Open(evil); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Errorf("Open of a tar with ../escape: %v, want refused", err)
	}
}
