package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// freePort is a loopback address on which nothing listens (it was free a moment ago).
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheck(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/ready", http.StatusFound)
			return
		}
		w.WriteHeader(status)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "ready")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		dep   spec.LocalDep
		ready bool
	}{
		{"a port that accepts", spec.LocalDep{Kind: spec.TCP, Target: listener.Addr().String()}, true},
		{"a port that refuses", spec.LocalDep{Kind: spec.TCP, Target: freePort(t)}, false},
		{"2xx", spec.LocalDep{Kind: spec.HTTP, Target: srv.URL + "/ready"}, true},
		{"a redirect to 2xx", spec.LocalDep{Kind: spec.HTTP, Target: srv.URL + "/moved"}, true},
		{"nothing listening", spec.LocalDep{Kind: spec.HTTP, Target: "http://" + freePort(t) + "/"}, false},
		{"a file that exists", spec.LocalDep{Kind: spec.File, Target: file}, true},
		{"a file that does not", spec.LocalDep{Kind: spec.File, Target: file + ".not"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(context.Background(), tt.dep); (err == nil) != tt.ready {
				t.Errorf("Check(%v) = %v, want ready %v", tt.dep, err, tt.ready)
			}
		})
	}
	status = http.StatusServiceUnavailable
	if err := Check(context.Background(), spec.LocalDep{Kind: spec.HTTP, Target: srv.URL + "/ready"}); err == nil {
		t.Error("a 503 counted as ready")
	}
}

// Watch reports each dependency once, when it first becomes ready, and nothing before.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	a, b := spec.LocalDep{Kind: spec.File, Target: filepath.Join(dir, "a")}, spec.LocalDep{Kind: spec.File, Target: filepath.Join(dir, "b")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := Watch(ctx, []spec.LocalDep{a, b}, 10*time.Millisecond)
	select {
	case d := <-ready:
		t.Fatalf("%v reported ready before it was", d)
	case <-time.After(100 * time.Millisecond):
	}
	for _, d := range []spec.LocalDep{b, a} {
		if err := os.WriteFile(d.Target, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ready:
			if got != d {
				t.Fatalf("reported %v, want %v", got, d)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%v never reported ready", d)
		}
	}
	select {
	case d := <-ready:
		t.Fatalf("%v reported twice", d)
	case <-time.After(100 * time.Millisecond):
	}
}
