package stopaction

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

func TestDo(t *testing.T) {
	var calls atomic.Int32
	var method atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		method.Store(r.Method)
		if r.URL.Path == "/quitquitquit" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	})}
	// The listener comes up only after the first attempts were refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return // taken meanwhile: the test below fails and says so
		}
		_ = srv.Serve(l)
	}()
	defer srv.Close()

	if err := Do(context.Background(), spec.StopAction{Method: "POST", URL: "http://" + addr + "/quitquitquit"}); err != nil {
		t.Fatalf("a listener that came up after 200 ms: %v", err)
	}
	if calls.Load() != 1 || method.Load() != "POST" {
		t.Errorf("%d calls, method %v; want one POST", calls.Load(), method.Load())
	}
	err = Do(context.Background(), spec.StopAction{Method: "POST", URL: "http://" + addr + "/nope"})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("a 404: %v, want an error naming the status", err)
	}
}

func TestDoGivesUpOnANeverListeningPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	began := time.Now()
	err = Do(context.Background(), spec.StopAction{Method: "POST", URL: "http://" + addr + "/quitquitquit"})
	if err == nil || !refused(err) {
		t.Fatalf("err %v, want connection refused", err)
	}
	if took := time.Since(began); took > retryFor+attemptTimeout {
		t.Errorf("gave up after %v, want within about %v", took, retryFor)
	}
}
