package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Registry lookups in these tests reach the in-process registry on 127.0.0.1 only.
func TestMain(m *testing.M) {
	registryOptions = []remote.Option{remote.WithTransport(localOnly{http.DefaultTransport})}
	os.Exit(m.Run())
}

type localOnly struct{ next http.RoundTripper }

func (l localOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.URL.Host, "127.0.0.1:") {
		return nil, errors.New("the tests do not reach " + r.URL.Host)
	}
	return l.next.RoundTrip(r)
}

func TestInjectLooksImagesUp(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Entrypoint, cf.Config.Cmd = []string{"/entry"}, []string{"serve", "--port=80"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/app:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	pod := `kind: Pod
metadata: {name: p}
spec:
  restartPolicy: Never
  containers:
  - name: proxy
    image: ` + host + `/app:1
  - name: main
    image: ` + host + `/app:1
    args: [migrate]
`
	code, out, errOut := call(t, pod, "inject", "-f", "-", "--sidecar", "proxy")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"  - name: proxy\n    image: " + host + "/app:1\n    command: [/koordinator/koordinator, /entry]\n    args: [serve, --port=80]\n",
		"  - name: main\n    image: " + host + "/app:1\n    command: [/koordinator/koordinator, /entry]\n    args: [migrate]\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks\n%s\ngot:\n%s", want, out)
		}
	}

	code, out, errOut = call(t, pod, "inject", "-f", "-", "--sidecar", "proxy", "--offline")
	if code != exitUsage || out != "" || !strings.Contains(errOut, "container(s) proxy, main have no command") || !strings.Contains(errOut, "--offline refuses") {
		t.Errorf("--offline: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	missing := strings.ReplaceAll(pod, "/app:1", "/gone:1")
	code, _, errOut = call(t, missing, "inject", "-f", "-", "--sidecar", "proxy")
	if code != exitUsage || !strings.Contains(errOut, host+"/gone:1 (for -: Pod/p: proxy, -: Pod/p: main): reading image") {
		t.Errorf("missing image: exit %d, stderr %s", code, errOut)
	}
}

func TestInjectPullSecrets(t *testing.T) {
	const user, password = "koordinator", "s3cret"
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
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.Entrypoint = []string{"/private"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/private:1")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: password})); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", t.TempDir())

	var read []string
	orig := newSecretGetter
	t.Cleanup(func() { newSecretGetter = orig })
	newSecretGetter = func(*rest.Config) (func(context.Context, string, string) (*corev1.Secret, error), error) {
		return func(_ context.Context, ns, name string) (*corev1.Secret, error) {
			read = append(read, ns+"/"+name)
			if name != "regcred" {
				return nil, errors.New(`secrets "` + name + `" not found`)
			}
			auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
			return &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Type:       corev1.SecretTypeDockerConfigJson,
				Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths": {"` + host + `": {"auth": "` + auth + `"}}}`)},
			}, nil
		}, nil
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: batch}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pod := func(pullSecrets string) string {
		return "kind: Pod\nmetadata: {name: p, namespace: team}\nspec:\n  restartPolicy: Never\n" + pullSecrets +
			"  containers:\n  - {name: proxy, image: " + host + "/private:1, args: [x]}\n  - {name: main, image: busybox, command: [/m]}\n"
	}
	const wired = "command: [/koordinator/koordinator, /private]"

	// The pod's own imagePullSecrets, read from its namespace with --cluster.
	code, out, errOut := call(t, pod("  imagePullSecrets: [{name: regcred}]\n"), "inject", "--kubeconfig", kubeconfig, "-f", "-", "--sidecar", "proxy", "--cluster")
	if code != 0 || !strings.Contains(out, wired) || strings.Join(read, " ") != "team/regcred" {
		t.Errorf("--cluster: exit %d, read %q, stderr %s\n%s", code, read, errOut, out)
	}
	// --pull-secret, from the context's namespace.
	read = nil
	code, out, errOut = call(t, pod(""), "inject", "--kubeconfig", kubeconfig, "-f", "-", "--sidecar", "proxy", "--pull-secret", "regcred")
	if code != 0 || !strings.Contains(out, wired) || strings.Join(read, " ") != "batch/regcred" {
		t.Errorf("--pull-secret: exit %d, read %q, stderr %s\n%s", code, read, errOut, out)
	}
	// Without either, the registry refuses; a secret that is not there is one line.
	if code, _, errOut := call(t, pod("  imagePullSecrets: [{name: regcred}]\n"), "inject", "-f", "-", "--sidecar", "proxy"); code != exitUsage || !strings.Contains(errOut, "UNAUTHORIZED") && !strings.Contains(errOut, "401") {
		t.Errorf("no secrets: exit %d, %s", code, errOut)
	}
	code, _, errOut = call(t, pod(""), "inject", "--kubeconfig", kubeconfig, "-f", "-", "--sidecar", "proxy", "--pull-secret", "gone")
	if code != exitUsage || !strings.Contains(errOut, `reading pull secret batch/gone: secrets "gone" not found`) {
		t.Errorf("missing secret: exit %d, %s", code, errOut)
	}
}
