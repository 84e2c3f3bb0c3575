package lifecycle_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/lifecycle"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/test/podstatus"
)

// quitServer stands for a proxy's admin endpoint: POST /quitquitquit is counted and creates
// the file quit in the folder set with into (which makes quitOnFile exit).
type quitServer struct {
	*httptest.Server
	calls atomic.Int32
	dir   atomic.Value
}

func newQuitServer(t *testing.T) *quitServer {
	q := &quitServer{}
	q.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/quitquitquit" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		q.calls.Add(1)
		if dir, ok := q.dir.Load().(string); ok {
			_ = os.WriteFile(filepath.Join(dir, "quit"), nil, 0o644)
		}
	}))
	t.Cleanup(q.Close)
	return q
}

func (q *quitServer) action() *spec.StopAction {
	return &spec.StopAction{Method: "POST", URL: q.URL + "/quitquitquit"}
}

// A child that exits once $DIR/quit exists, and records a SIGTERM if one comes.
const quitOnFile = `trap 'echo term > "$DIR/term"; exit 0' TERM; echo started > "$DIR/started"; while [ ! -e "$DIR/quit" ]; do sleep 0.05; done`

// A stop action replaces the stop signal: the request is made, the child stops by itself, and
// no signal is sent.
func TestStopActionInPlaceOfTheSignal(t *testing.T) {
	q := newQuitServer(t)
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopAction: q.action(), StopTimeout: 20 * time.Second}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, quitOnFile)
	q.dir.Store(h.dir)
	h.update(set("main", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want terminatedByStopDepExitCode 0; logs:\n%s", code, h.dump())
	}
	if q.calls.Load() != 1 || h.exists("term") || h.logs.FilterMessage("stop action done").Len() != 1 {
		t.Errorf("want one request and no signal: %d requests, term file %v; logs:\n%s", q.calls.Load(), h.exists("term"), h.dump())
	}
}

// A stop action that cannot be made falls back to the stop signal.
func TestStopActionFailureFallsBackToTheSignal(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there
	sp := spec.Spec{Name: "proxy", StopDeps: []string{"main"}, StopTimeout: 20 * time.Second,
		StopAction: &spec.StopAction{Method: "POST", URL: "http://" + addr + "/quitquitquit"}}
	h := start(t, podWith(corev1.RestartPolicyNever, "proxy", "main"), sp, quitOnFile)
	h.update(set("main", podstatus.Running(true)))
	h.waitFor("child started", func() bool { return h.exists("started") })
	h.update(set("main", podstatus.Terminated(0)))
	if code := h.exitCode(); code != 0 {
		t.Fatalf("exit code %d, want 0; logs:\n%s", code, h.dump())
	}
	if !h.exists("term") || h.logs.FilterMessage("stop action failed").Len() != 1 || h.logs.FilterMessage("stopping the child").Len() != 1 {
		t.Errorf("want the failure logged and SIGTERM sent; logs:\n%s", h.dump())
	}
}

// A stopper runs no child: it waits for its stop dependencies to exit for good, makes the stop
// action, and exits 0 — also when the action fails, so it never fails a Job whose mains succeeded.
func TestStopper(t *testing.T) {
	for _, works := range []bool{true, false} {
		t.Run(map[bool]string{true: "action answered", false: "action failed"}[works], func(t *testing.T) {
			q := newQuitServer(t)
			action := q.action()
			if !works {
				action.URL = q.URL + "/not-there"
			}
			sp := spec.Spec{Name: "stopper", StopDeps: []string{"main"}, StopAction: action}
			pod := podWith(corev1.RestartPolicyNever, "istio-proxy", "main", "stopper")
			h := start(t, pod, sp, "", func(c *lifecycle.Config) { c.Command = nil })
			h.update(set("main", podstatus.Running(true)))
			h.waitLog("stopper: no child; waiting for the stop dependencies")
			if q.calls.Load() != 0 {
				t.Fatal("the stop action was made while main runs")
			}
			h.update(set("main", podstatus.Terminated(3))) // a failed main: the stopper still exits 0
			if code := h.exitCode(); code != 0 {
				t.Fatalf("exit code %d, want 0; logs:\n%s", code, h.dump())
			}
			want := map[bool]string{true: "stop action done", false: "stop action failed"}[works]
			if h.logs.FilterMessage(want).Len() != 1 || (works && q.calls.Load() != 1) {
				t.Errorf("want %q and the request made; logs:\n%s", want, h.dump())
			}
		})
	}
}
