package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
)

var binaries = map[string][]byte{
	"amd64": []byte("\x7fELF fake koordinator for amd64\n"),
	"arm64": []byte("\x7fELF fake koordinator for arm64, a little longer\n"),
}

// imageTarball writes the tarball make image writes, from fake binaries.
func imageTarball(t *testing.T) (string, *ociimage.Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "koordinator-image.tar")
	res, err := ociimage.Write(out, ociimage.Options{
		Platforms: []ociimage.Platform{{Arch: "amd64", Binary: binaries["amd64"]}, {Arch: "arm64", Binary: binaries["arm64"]}},
		Tags:      []string{"koordinator:test"},
		Epoch:     time.Unix(1700000000, 0).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, res
}

// TestPush pushes the tarball to go-containerregistry's in-process registry and pulls it back as
// a node would: the index by tag and by the printed digest, each platform's image by platform, its
// config (entrypoint, user) and its one layer holding the binary.
func TestPush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(discardLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tarball, res := imageTarball(t)

	ref := host + "/team/koordinator:v0.0.1"
	var out bytes.Buffer
	digest, err := push(context.Background(), &out, tarball, ref, false, authn.DefaultKeychain)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("push printed:\n%s", out.String())
	if digest != res.Index {
		t.Errorf("pushed digest %s, the tarball's index is %s", digest, res.Index)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	pinned := host + "/team/koordinator@" + res.Index.String()
	if len(lines) != 3 || lines[1] != "digest: "+res.Index.String() || lines[2] != pinned ||
		!strings.Contains(lines[0], "(linux/amd64, linux/arm64)") {
		t.Errorf("push printed %q, want the platforms, the digest and %s", lines, pinned)
	}

	for _, r := range []string{ref, pinned} {
		pref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(pref)
		if err != nil {
			t.Fatalf("pulling %s: %v", r, err)
		}
		if d, _ := idx.Digest(); d != res.Index {
			t.Errorf("%s: index %s, want %s", r, d, res.Index)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, d := range im.Manifests {
			platforms = append(platforms, d.Platform.String())
		}
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("%s: platforms %v, want linux/amd64 and linux/arm64", r, platforms)
		}
		for _, arch := range []string{"amd64", "arm64"} {
			img, err := remote.Image(pref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
			if err != nil {
				t.Fatalf("pulling %s for linux/%s: %v", r, arch, err)
			}
			checkImage(t, img, arch)
		}
	}
}

func checkImage(t *testing.T, img v1.Image, arch string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("linux/%s: config says %s/%s", arch, cf.OS, cf.Architecture)
	}
	if want := []string{"/bin/koordinator", "--install"}; !slices.Equal(cf.Config.Entrypoint, want) || cf.Config.Cmd != nil {
		t.Errorf("linux/%s: entrypoint %q cmd %q, want %q and no cmd", arch, cf.Config.Entrypoint, cf.Config.Cmd, want)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("linux/%s: user %q, want 65532:65532", arch, cf.Config.User)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("linux/%s: %d layers, want 1", arch, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tr)
	if h.Name != "bin/koordinator" || h.Mode != 0o755 || !bytes.Equal(got, binaries[arch]) {
		t.Errorf("linux/%s: layer holds %s mode %o %q, want bin/koordinator 0755 with the amd64 binary", arch, h.Name, h.Mode, got)
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("linux/%s: the layer holds more than bin/koordinator", arch)
	}
}

// TestPushAuth: a registry that wants a password gets the one `docker login` left in the docker
// config ($DOCKER_CONFIG) through authn.DefaultKeychain, as crane would; without it, push fails.
func TestPushAuth(t *testing.T) {
	reg := registry.New(registry.Logger(discardLogger()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tarball, res := imageTarball(t)
	ref := host + "/team/koordinator:v0.0.1"

	t.Setenv("DOCKER_CONFIG", t.TempDir()) // empty: no credentials
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "none.json"))
	if _, err := push(context.Background(), io.Discard, tarball, ref, false, authn.DefaultKeychain); err == nil {
		t.Fatal("push without credentials succeeded against a registry that wants them")
	}

	cfg := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("user:secret"))
	if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfg)
	digest, err := push(context.Background(), io.Discard, tarball, ref, false, authn.DefaultKeychain)
	if err != nil {
		t.Fatalf("push with the docker config's credentials: %v", err)
	}
	if digest != res.Index {
		t.Errorf("pushed %s, want %s", digest, res.Index)
	}
}

// TestPushRefusesBadInput: a reference without a registry path or a file that is no image layout
// fail before anything is pushed.
func TestPushRefusesBadInput(t *testing.T) {
	tarball, _ := imageTarball(t)
	if _, err := push(context.Background(), io.Discard, tarball, "UPPER/case:tag", false, authn.DefaultKeychain); err == nil {
		t.Error("an invalid reference was accepted")
	}
	notTar := filepath.Join(t.TempDir(), "x.tar")
	if err := os.WriteFile(notTar, []byte("not a tarball"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := push(context.Background(), io.Discard, notTar, "localhost:1/koordinator:v1", false, authn.DefaultKeychain); err == nil {
		t.Error("a file that is not an image tarball was accepted")
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
