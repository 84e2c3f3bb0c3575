package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A spec whose only dependencies are local never contacts the API: here there is no pod
// identity and no Kubernetes configuration at all, and the child starts once its file exists
// and its port accepts.
func TestLocalStartDepsWithoutTheAPI(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	started := filepath.Join(dir, "started")
	p := startKoordinator(t, []string{
		`KOORDINATOR_SPEC={"startDeps":[{"file":"` + ready + `"},{"tcp":"` + listener.Addr().String() + `"}],"probeInterval":"20ms"}`,
		"KUBECONFIG=", "KUBERNETES_SERVICE_HOST=", "HOSTNAME=",
	}, "sh", "-c", `touch "$0"; exit 7`, started)
	// The probe's connection reaching the listener is the port counting as ready.
	accepted := make(chan error, 1)
	go func() {
		c, err := listener.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(deadline):
		t.Fatal("the port was never checked")
	}
	time.Sleep(200 * time.Millisecond) // ten probe intervals: a start now would be a bug
	if _, err := os.Stat(started); err == nil {
		t.Fatalf("the child started before its file dependency existed; stderr:\n%s", p.stderr.String())
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 7 {
		t.Fatalf("exit %d, want the child's 7; stderr:\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(started); err != nil {
		t.Error("the child did not run")
	}
}

// koordinator without a command is a stopper when the spec has a stopAction; what a stopper
// needs is checked before anything runs.
func TestStopperNeedsStopDeps(t *testing.T) {
	for _, tt := range []struct{ spec, want string }{
		{`{"stopAction":{"http":"POST http://127.0.0.1:15020/quitquitquit"}}`, `a stopper (a stopAction and no command) needs \"stopDeps\"`},
		{`{"stopDeps":["main"],"startDeps":["proxy"],"stopAction":{"http":"POST http://127.0.0.1:15020/quitquitquit"}}`, `runs no child, so it has nothing to start`},
		{`{"stopDeps":["main"],"stopAction":{"http":"POST http://10.1.2.3:15020/quitquitquit"}}`, `whose host is not this pod's loopback`},
		{`{"stopDeps":["main"]}`, `no command to run`},
	} {
		code, _, stderr := runKoordinator(t, []string{"KOORDINATOR_SPEC=" + tt.spec})
		if code != 125 || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 && !strings.Contains(stderr, "Usage") {
			t.Errorf("%s: exit %d, want 125 and one line with %q; stderr:\n%s", tt.spec, code, tt.want, stderr)
		}
	}
}

// restartChild: the real binary starts a child that failed again, inside the same process,
// and ends with the run that succeeded.
func TestRestartChildProcess(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs")
	code, _, stderr := runKoordinator(t, []string{`KOORDINATOR_SPEC={"restartChild":"OnFailure"}`},
		"sh", "-c", `echo x >> "$0"; [ "$(wc -l < "$0")" -ge 3 ] || exit 5`, runs)
	if code != 0 {
		t.Fatalf("exit %d, want 0 from the third run; stderr:\n%s", code, stderr)
	}
	if n := strings.Count(readFile(runs), "x"); n != 3 || strings.Count(stderr, "child exited; restarting it") != 2 {
		t.Errorf("%d runs, want 3 with two restarts; stderr:\n%s", n, stderr)
	}
}
