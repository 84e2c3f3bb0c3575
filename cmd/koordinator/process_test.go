package main

// Black-box tests of the built binary as a real process, with real signals, without the API
// (empty spec): what a user sees when koordinator is PID 1 of a container. Exit codes, signals,
// reaping and the terminal, in each way koordinator meets its child, are in pid1_suite_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const deadline = 30 * time.Second

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "koordinator-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "koordinator")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building koordinator: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running koordinator.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
}

func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KOORDINATOR_") || strings.HasPrefix(kv, "KOOORDINATOR_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func startKoordinator(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(deadline):
		p.t.Fatalf("koordinator did not exit; stderr:\n%s", p.stderr.String())
		return -1
	}
}

func runKoordinator(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startKoordinator(t, env, args...)
	code = p.wait()
	return code, p.stdout.String(), p.stderr.String()
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCommandNotFoundOrNotExecutable(t *testing.T) {
	if code, _, stderr := runKoordinator(t, nil, "no-such-command-koordinator"); code != 127 {
		t.Errorf("missing command: exit %d, want 127; stderr:\n%s", code, stderr)
	}
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runKoordinator(t, nil, notExec); code != 126 {
		t.Errorf("non-executable command: exit %d, want 126; stderr:\n%s", code, stderr)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func TestLeftoversDrained(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runKoordinator(t, []string{"DIR=" + dir}, "sh", "-c", `sleep 1000 & echo $! > $DIR/pid; exit 0`)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(dir, "pid"))))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("leftover sleep %d still running after koordinator exited", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func TestStdinPassthrough(t *testing.T) {
	cmd := exec.Command(binary, "sh", "-c", "tr a-z A-Z")
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader("hello koordinator\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "HELLO KOORDINATOR\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestSIGTERMWithoutDepsStopsChild(t *testing.T) {
	dir := t.TempDir()
	p := startKoordinator(t, []string{"DIR=" + dir}, "sh", "-c", `echo ready > $DIR/ready; while :; do sleep 1 & wait $!; done`)
	waitFile(t, filepath.Join(dir, "ready"))
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(); code != 143 {
		t.Errorf("exit %d, want 143 (child killed by SIGTERM)", code)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, _ := runKoordinator(t, nil, "--version"); code != 0 || !strings.HasPrefix(out, "koordinator ") {
		t.Errorf("--version: exit %d, output %q", code, out)
	}
	if code, out, _ := runKoordinator(t, nil, "--help"); code != 0 || !strings.Contains(out, "--install DIR") {
		t.Errorf("--help: exit %d, output %q", code, out)
	}
	if code, _, stderr := runKoordinator(t, nil); code != 125 || !strings.Contains(stderr, "no command") {
		t.Errorf("no command: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runKoordinator(t, nil, "--bogus", "true"); code != 125 || !strings.Contains(stderr, "bogus") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, stderr)
	}
}

func TestDoubleDashAndVerbLikeCommands(t *testing.T) {
	// A command named like a flag after "--", and a program named "install": both are run.
	dir := t.TempDir()
	prog := filepath.Join(dir, "install")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 9\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runKoordinator(t, []string{"PATH=" + dir + ":" + os.Getenv("PATH")}, "install", "x"); code != 9 {
		t.Errorf("program named install: exit %d; stderr:\n%s", code, stderr)
	}
	if code, _, stderr := runKoordinator(t, nil, "--", "sh", "-c", "exit 4"); code != 4 {
		t.Errorf("after --: exit %d; stderr:\n%s", code, stderr)
	}
}

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 2; i++ { // idempotent
		if code, _, stderr := runKoordinator(t, nil, "--install", dir); code != 0 {
			t.Fatalf("--install: exit %d; stderr:\n%s", code, stderr)
		}
	}
	installed := filepath.Join(dir, "koordinator")
	fi, err := os.Stat(installed)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", fi.Mode().Perm())
	}
	want, _ := os.ReadFile(binary)
	if got, _ := os.ReadFile(installed); !bytes.Equal(got, want) {
		t.Error("installed file differs from the binary")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	out, err := exec.Command(installed, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "koordinator") {
		t.Errorf("installed copy does not run: %v %q", err, out)
	}

	// Refuses to write through a symlink.
	linkDir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(linkDir, "koordinator")); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runKoordinator(t, nil, "--install", linkDir); code != 125 || !strings.Contains(stderr, "symlink") {
		t.Errorf("install through symlink: exit %d, stderr %q", code, stderr)
	}
	if readFile(victim) != "keep" {
		t.Error("install wrote through a symlink")
	}
	if code, _, _ := runKoordinator(t, nil, "--install", filepath.Join(dir, "missing")); code != 125 {
		t.Errorf("install into a missing folder: exit %d, want 125", code)
	}
}

// --install never writes outside the folder as the user named it: not through a symlink named
// with a trailing slash (which makes the path resolve it), nor through a symlink anywhere on
// the path.
func TestInstallNeverFollowsASymlinkedFolder(t *testing.T) {
	real, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Mkdir(filepath.Join(elsewhere, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(real, "link")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{link + "/", link, filepath.Join(link, "sub"), filepath.Join(link, "sub") + "/", link + "/./sub"} {
		code, _, stderr := runKoordinator(t, nil, "--install", dir)
		if code != 125 || !strings.Contains(stderr, link+" is a symlink") {
			t.Errorf("--install %s: exit %d, want 125 naming %s as a symlink; stderr %q", dir, code, link, stderr)
		}
	}
	for d, want := range map[string]int{elsewhere: 1 /* sub */, filepath.Join(elsewhere, "sub"): 0} {
		if entries, _ := os.ReadDir(d); len(entries) != want {
			t.Errorf("written through the symlink into %s: %v", d, entries)
		}
	}
	// A real folder named with a trailing slash is fine.
	if code, out, stderr := runKoordinator(t, nil, "--install", real+"/"); code != 0 || out != "installed "+filepath.Join(real, "koordinator")+"\n" {
		t.Errorf("--install %s/: exit %d, stdout %q, stderr %q", real, code, out, stderr)
	}
	if code, _, stderr := runKoordinator(t, nil, "--install", filepath.Join(real, "koordinator")); code != 125 || !strings.Contains(stderr, "is not a directory") {
		t.Errorf("--install into a file: exit %d; stderr %q", code, stderr)
	}
}

func TestCheck(t *testing.T) {
	code, out, stderr := runKoordinator(t, []string{`KOORDINATOR_SPEC={"startDeps":["proxy"],"termSignal":"INT","stopDelay":"1m30s"}`}, "--check")
	if code != 0 {
		t.Fatalf("--check: exit %d; stderr %q", code, stderr)
	}
	for _, want := range []string{`"startDeps":["proxy"]`, `"stopSignal":"SIGINT"`, `"stopDelay":"1m30s"`, `"stopTimeout":"30s"`, `"killedByStopDepExitCode":137`} {
		if !strings.Contains(strings.ReplaceAll(out, " ", ""), want) {
			t.Errorf("--check output lacks %s:\n%s", want, out)
		}
	}
	if code, out, _ := runKoordinator(t, nil, "--check"); code != 0 || !strings.Contains(out, `"stopDeps"`) {
		t.Errorf("--check with no spec: exit %d, output %q", code, out)
	}
}

func TestBadSpecs(t *testing.T) {
	cases := []struct{ env, want string }{
		{`KOORDINATOR_SPEC={"startdeps":["a"]}`, `did you mean "startDeps"`},
		{`KOORDINATOR_SPEC={"stopDelay":"soon"}`, "stopDelay"},
		{`KOORDINATOR_SPEC={"stopSignal":"SIGNOPE"}`, "stopSignal"},
		{`KOORDINATOR_SPEC={"startDeps":"proxy"}`, "startDeps"},
		{`KOORDINATOR_SPEC={"startDeps":["a"]`, "KOORDINATOR_SPEC"},
		{`KOORDINATOR_SPEC=[]`, "KOORDINATOR_SPEC"},
		{`KOOORDINATOR_SPEC={"startDeps":["a"]}`, "KOOORDINATOR_SPEC"},
		{`KOORDINATOR_SPEC={"killedByStopDepExitCode":300}`, "killedByStopDepExitCode"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		for _, mode := range [][]string{{"--check"}, {"sh", "-c", "touch " + dir + "/ran"}} {
			code, _, stderr := runKoordinator(t, []string{c.env}, mode...)
			if code != 125 {
				t.Errorf("%s %v: exit %d, want 125", c.env, mode, code)
			}
			if !strings.Contains(message(stderr), c.want) {
				t.Errorf("%s %v: stderr %q lacks %q", c.env, mode, stderr, c.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("%s %v: want one line, got %d:\n%s", c.env, mode, n+1, stderr)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("the child ran despite a bad spec")
	}
}

// message is the text of a one-line error: the msg of a JSON log line, or the line itself.
func message(stderr string) string {
	var line struct{ Msg string }
	if json.Unmarshal([]byte(stderr), &line) == nil && line.Msg != "" {
		return line.Msg
	}
	return stderr
}

func TestMissingPodIdentity(t *testing.T) {
	code, _, stderr := runKoordinator(t, []string{`KOORDINATOR_SPEC={"startDeps":["proxy"]}`, "HOSTNAME=", "KOORDINATOR_PODINFO_DIR=" + t.TempDir()}, "true")
	if code != 125 {
		t.Fatalf("exit %d, want 125; stderr:\n%s", code, stderr)
	}
}

// Once the child runs and start-up is over, koordinator gives back the pages of its own
// executable that start-up touched: its file-backed resident set shrinks.
func TestStartUpMemoryReleased(t *testing.T) {
	dir := t.TempDir()
	p := startKoordinator(t, []string{"DIR=" + dir, "KOORDINATOR_LOG_LEVEL=debug"}, "sh", "-c", `echo ready > $DIR/ready; while :; do sleep 1 & wait $!; done`)
	waitFile(t, filepath.Join(dir, "ready"))
	atStart := rssFileKB(t, p.cmd.Process.Pid)
	end := time.Now().Add(deadline)
	for rssFileKB(t, p.cmd.Process.Pid) > atStart/2 {
		if time.Now().After(end) {
			t.Fatalf("RssFile still %d kB, %d kB when the child started", rssFileKB(t, p.cmd.Process.Pid), atStart)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait()
	if !strings.Contains(p.stderr.String(), `"msg":"released start-up memory"`) {
		t.Errorf("no 'released start-up memory' line; stderr:\n%s", p.stderr.String())
	}
}

func rssFileKB(t *testing.T, pid int) int {
	t.Helper()
	for l := range strings.Lines(readFile(fmt.Sprintf("/proc/%d/status", pid))) {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no RssFile for pid %d", pid)
	return 0
}
