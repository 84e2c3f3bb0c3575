package imageconfig

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const user, password = "koordinator", "s3cret"

// serve starts an in-process registry that wants basic auth, and returns its host.
func serve(t *testing.T) string {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

var push = remote.WithAuth(&authn.Basic{Username: user, Password: password})

func image(t *testing.T, entrypoint, cmd []string) v1.Image {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Entrypoint, cf.Config.Cmd = entrypoint, cmd
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func pushImage(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, push); err != nil {
		t.Fatal(err)
	}
}

func pushIndex(t *testing.T, ref string, imgs map[string]v1.Image) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	keys := make([]string, 0, len(imgs))
	for k := range imgs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, p := range keys {
		platform, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: imgs[p], Descriptor: v1.Descriptor{Platform: platform}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, push); err != nil {
		t.Fatal(err)
	}
}

// dockerConfig writes a docker config holding the registry's credentials and points
// DOCKER_CONFIG at it, as a user's docker login would.
func dockerConfig(t *testing.T, host string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

func TestLookup(t *testing.T) {
	host := serve(t)
	dockerConfig(t, host)
	pushImage(t, host+"/single:1", image(t, []string{"/entry", "-x"}, []string{"serve"}))
	pushImage(t, host+"/cmd-only:1", image(t, nil, []string{"sh"}))
	same := func() v1.Image { return image(t, []string{"/app"}, nil) }
	pushIndex(t, host+"/multi:1", map[string]v1.Image{"linux/amd64": same(), "linux/arm64": same(), "unknown/unknown": image(t, nil, nil)})
	pushIndex(t, host+"/disagree:1", map[string]v1.Image{"linux/amd64": image(t, []string{"/app"}, nil), "linux/arm64": image(t, []string{"/app-arm"}, nil)})

	tests := []struct {
		image           string
		entrypoint, cmd []string
		err             string
	}{
		{image: host + "/single:1", entrypoint: []string{"/entry", "-x"}, cmd: []string{"serve"}},
		{image: host + "/cmd-only:1", cmd: []string{"sh"}},
		{image: host + "/multi:1", entrypoint: []string{"/app"}},
		{image: host + "/disagree:1", err: `run different commands (linux/amd64 runs ENTRYPOINT ["/app"] CMD []; linux/arm64 runs ENTRYPOINT ["/app-arm"] CMD [])`},
		{image: host + "/missing:1", err: "reading image " + host + "/missing:1: "},
		{image: "Not A Reference", err: `image "Not A Reference": `},
	}
	var r Registry
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			cfg, err := r.Lookup(context.Background(), tt.image)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.Entrypoint, tt.entrypoint) || !slices.Equal(cfg.Cmd, tt.cmd) {
				t.Errorf("got %q %q, want %q %q", cfg.Entrypoint, cfg.Cmd, tt.entrypoint, tt.cmd)
			}
		})
	}
}

func TestLookupWithoutCredentials(t *testing.T) {
	host := serve(t)
	pushImage(t, host+"/single:1", image(t, []string{"/entry"}, nil))
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no config.json: anonymous
	var r Registry
	_, err := r.Lookup(context.Background(), host+"/single:1")
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "401") {
		t.Fatalf("error %v, want one saying the registry refused", err)
	}
}

func TestLookupPlatform(t *testing.T) {
	host := serve(t)
	dockerConfig(t, host)
	pushIndex(t, host+"/disagree:1", map[string]v1.Image{"linux/amd64": image(t, []string{"/app"}, nil), "linux/arm64": image(t, []string{"/app-arm"}, nil)})
	for platform, want := range map[string]string{"linux/arm64": "/app-arm", "linux/amd64": "/app"} {
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			t.Fatal(err)
		}
		r := Registry{Platform: p}
		cfg, err := r.Lookup(context.Background(), host+"/disagree:1")
		if err != nil || !slices.Equal(cfg.Entrypoint, []string{want}) {
			t.Errorf("%s: %q, %v", platform, cfg.Entrypoint, err)
		}
	}
	r := Registry{Platform: &v1.Platform{OS: "windows", Architecture: "amd64"}}
	if _, err := r.Lookup(context.Background(), host+"/disagree:1"); err == nil || !strings.Contains(err.Error(), "for windows/amd64") {
		t.Errorf("a platform the index lacks: %v", err)
	}
}

func TestPullSecrets(t *testing.T) {
	host := serve(t)
	pushImage(t, host+"/team/app:1", image(t, []string{"/app"}, nil))
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no docker credentials: only the secrets
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	secret := func(typ corev1.SecretType, key, data string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "ns"}, Type: typ, Data: map[string][]byte{key: []byte(data)}}
	}
	tests := []struct {
		name   string
		secret *corev1.Secret
		ok     bool
	}{
		{"dockerconfigjson", secret(corev1.SecretTypeDockerConfigJson, ".dockerconfigjson", fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth)), true},
		{"dockercfg with a scheme", secret(corev1.SecretTypeDockercfg, ".dockercfg", fmt.Sprintf(`{"http://%s/v1/": {"username": %q, "password": %q}}`, host, user, password)), true},
		{"for this repository", secret(corev1.SecretTypeDockerConfigJson, ".dockerconfigjson", fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host+"/team", auth)), true},
		{"for another repository", secret(corev1.SecretTypeDockerConfigJson, ".dockerconfigjson", fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host+"/other", auth)), false},
		{"for another registry", secret(corev1.SecretTypeDockerConfigJson, ".dockerconfigjson", fmt.Sprintf(`{"auths": {"example.com": {"auth": %q}}}`, auth)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps PullSecrets
			if err := ps.AddSecret(tt.secret); err != nil {
				t.Fatal(err)
			}
			r := Registry{Keychain: authn.NewMultiKeychain(&ps, authn.DefaultKeychain)}
			cfg, err := r.Lookup(context.Background(), host+"/team/app:1")
			if tt.ok != (err == nil) {
				t.Fatalf("error %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && !slices.Equal(cfg.Entrypoint, []string{"/app"}) {
				t.Errorf("entrypoint %q", cfg.Entrypoint)
			}
		})
	}
	var ps PullSecrets
	if err := ps.AddSecret(secret(corev1.SecretTypeOpaque, "x", "")); err == nil || !strings.Contains(err.Error(), `secret ns/regcred is of type "Opaque", not an image pull secret`) {
		t.Errorf("opaque secret: %v", err)
	}
	if err := ps.AddSecret(secret(corev1.SecretTypeDockerConfigJson, ".dockerconfigjson", "{")); err == nil || !strings.Contains(err.Error(), "is not a docker config") {
		t.Errorf("broken secret: %v", err)
	}
}

func TestSplitRegistryKey(t *testing.T) {
	for key, want := range map[string][2]string{
		"https://index.docker.io/v1/": {"index.docker.io", ""},
		"docker.io":                   {"index.docker.io", ""},
		"registry:5000":               {"registry:5000", ""},
		"registry:5000/team/":         {"registry:5000", "team"},
		"https://ghcr.io/org":         {"ghcr.io", "org"},
	} {
		if h, p := splitRegistryKey(key); h != want[0] || p != want[1] {
			t.Errorf("%q: %q %q, want %q", key, h, p, want)
		}
	}
}
