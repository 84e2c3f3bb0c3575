package main

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binaryIn puts the built binary in a folder of its own, so its .state is this test's.
func binaryIn(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "koordinator")
	if err := os.Link(binary, bin); err != nil {
		b, err := os.ReadFile(binary)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// A wrapper without dependencies publishes its child's start and exit next to the binary,
// without contacting any API.
func TestPublishesStateNextToTheBinary(t *testing.T) {
	bin := binaryIn(t)
	stateFile := filepath.Join(filepath.Dir(bin), ".state", "x")
	cmd := exec.Command(bin, "sh", "-c", "read line; exit 3")
	cmd.Env = cleanEnv(`KOORDINATOR_SPEC={"name":"x"}`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); <-done }) // EOF ends the child too

	var started map[string]any
	if err := json.Unmarshal([]byte(waitFile(t, stateFile)), &started); err != nil {
		t.Fatal(err)
	}
	if started["state"] != "running" || started["container"] != "x" || started["pid"] == nil || started["startedAt"] == nil {
		t.Errorf("while the child runs: %v", started)
	}
	_, _ = io.WriteString(stdin, "go\n")
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("koordinator did not exit")
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("exit %d, want 3; stderr:\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	var exited map[string]any
	if err := json.Unmarshal(b, &exited); err != nil {
		t.Fatal(err)
	}
	if exited["state"] != "exited" || exited["exitCode"] != float64(3) || exited["instance"] != started["instance"] || exited["pid"] != started["pid"] {
		t.Errorf("after the exit: %s (started: %v)", b, started)
	}
	if fi, err := os.Lstat(stateFile); err != nil || fi.Mode() != 0o644 {
		t.Errorf("state file mode: %v %v", fi.Mode(), err)
	}
}

func TestLocalStateOff(t *testing.T) {
	bin := binaryIn(t)
	cmd := exec.Command(bin, "true")
	cmd.Env = cleanEnv(`KOORDINATOR_SPEC={"name":"x"}`, "KOORDINATOR_LOCAL_STATE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(bin), ".state")); err == nil {
		t.Error("published although KOORDINATOR_LOCAL_STATE=off")
	}

	code, _, stderr := runKoordinator(t, []string{"KOORDINATOR_LOCAL_STATE=maybe"}, "true")
	if code != 125 || !strings.Contains(stderr, "KOORDINATOR_LOCAL_STATE") {
		t.Errorf("KOORDINATOR_LOCAL_STATE=maybe: exit %d, want 125 naming the variable; stderr:\n%s", code, stderr)
	}
}

// KOORDINATOR_STATE_DIR moves the pod-local channel out of the binary's folder (a binary mounted
// read-only from an image volume): nothing is written next to the binary.
func TestStateDir(t *testing.T) {
	bin := binaryIn(t)
	stateDir := t.TempDir()
	cmd := exec.Command(bin, "sh", "-c", "exit 4")
	cmd.Env = cleanEnv(`KOORDINATOR_SPEC={"name":"x"}`, "KOORDINATOR_STATE_DIR="+stateDir)
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != 4 {
		t.Fatalf("exit %d (%v), want the child's 4", cmd.ProcessState.ExitCode(), err)
	}
	var exited map[string]any
	if err := json.Unmarshal([]byte(readFile(filepath.Join(stateDir, ".state", "x"))), &exited); err != nil || exited["exitCode"] != float64(4) {
		t.Errorf("state file in KOORDINATOR_STATE_DIR: %v %v", exited, err)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(bin), ".state")); err == nil {
		t.Error("wrote next to the binary although KOORDINATOR_STATE_DIR is set")
	}
	code, _, stderr := runKoordinator(t, []string{"KOORDINATOR_STATE_DIR=state"}, "true")
	if code != 125 || !strings.Contains(stderr, `KOORDINATOR_STATE_DIR=\"state\": use an absolute path`) {
		t.Errorf("relative KOORDINATOR_STATE_DIR: exit %d, want 125 and a line saying why; stderr:\n%s", code, stderr)
	}
}

// Without the API ("api": false), two real wrappers in one folder: the proxy is stopped once
// main's wrapper has published its exit, with no API, pod identity or Kubernetes configuration.
func TestStopDepsWithoutTheAPIProcess(t *testing.T) {
	bin := binaryIn(t)
	dir := t.TempDir()
	// The child says it is ready once its trap is set: main exits only then, or the stop could
	// come before the trap and end the shell with the signal's default action.
	ready := filepath.Join(dir, "proxy-ready")
	proxy := exec.Command(bin, "sh", "-c", `trap 'echo stopped > "$0"; exit 0' TERM; echo ready > "$1"; while :; do sleep 1 & wait $!; done`, filepath.Join(dir, "proxy-stopped"), ready)
	proxy.Env = cleanEnv(`KOORDINATOR_SPEC={"name":"proxy","api":false,"stopDeps":["main"]}`, "KUBECONFIG=", "KUBERNETES_SERVICE_HOST=")
	var proxyErr strings.Builder
	proxy.Stderr = &proxyErr
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = proxy.Wait(); close(done) }()
	t.Cleanup(func() { _ = proxy.Process.Kill(); <-done })

	waitFile(t, ready)
	main := exec.Command(bin, "sh", "-c", "exit 0")
	main.Env = cleanEnv(`KOORDINATOR_SPEC={"name":"main"}`)
	if out, err := main.CombinedOutput(); err != nil {
		t.Fatalf("main: %v\n%s", err, out)
	}
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("the proxy's koordinator did not exit after main's exit")
	}
	if code := proxy.ProcessState.ExitCode(); code != 0 || readFile(filepath.Join(dir, "proxy-stopped")) != "stopped\n" {
		t.Errorf("proxy: exit %d, want 0 after its child was stopped; stderr:\n%s", code, proxyErr.String())
	}
}
