package main

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
