// Command controlplane keeps a local test control plane (package testenv)
// running for experiments: `make up` / `make down`.
//
//	controlplane up      start it in the background; print the kubeconfig path
//	controlplane down    stop it; nothing is left running
//	controlplane status  say whether it is running
//	controlplane run     run it in the foreground until Ctrl-C
//
// State lives in <repo>/.cache/up/: pid (the background process), kubeconfig
// (admin, written once the control plane is ready), rundir, and
// controlplane.log. The binaries must be built first (make controlplane).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

const usage = "usage: controlplane up|down|status|run"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fail(err)
	}
	s := state{dir: filepath.Join(root, ".cache", "up")}
	switch os.Args[1] {
	case "up":
		err = s.up()
	case "down":
		err = s.down()
	case "status":
		err = s.status()
	case "run":
		err = s.run(false)
	case "serve": // internal: the background process started by up
		err = s.run(true)
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "controlplane:", err)
	os.Exit(1)
}

type state struct{ dir string }

func (s state) path(name string) string { return filepath.Join(s.dir, name) }

// runningPID returns the pid of the background control plane, or 0.
func (s state) runningPID() int {
	b, err := os.ReadFile(s.path("pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	// Make sure the pid is still ours and not a reused one.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) < 2 || !strings.Contains(filepath.Base(args[0]), "controlplane") || (args[1] != "serve" && args[1] != "run") {
		return 0
	}
	return pid
}

func (s state) up() error {
	if _, err := testenv.FindBinaries(""); err != nil {
		return err
	}
	if pid := s.runningPID(); pid != 0 {
		if _, err := os.Stat(s.path("kubeconfig")); err == nil {
			fmt.Printf("control plane already running (pid %d)\nexport KUBECONFIG=%s\n", pid, s.path("kubeconfig"))
			return nil
		}
		return s.waitReady(pid, nil)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"pid", "kubeconfig", "rundir"} {
		os.Remove(s.path(f))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(s.path("controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(self, "serve")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlive this shell
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	fmt.Printf("starting the local control plane (log: %s)\n", s.path("controlplane.log"))
	return s.waitReady(cmd.Process.Pid, exited)
}

// waitReady waits for the background process to write the kubeconfig.
func (s state) waitReady(pid int, exited <-chan struct{}) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(s.path("kubeconfig")); err == nil {
			fmt.Printf("control plane running (pid %d); stop it with make down\nexport KUBECONFIG=%s\n", pid, s.path("kubeconfig"))
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the control plane did not start:\n%s", tailFile(s.path("controlplane.log")))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("the control plane is not ready after 5 minutes (pid %d); see %s", pid, s.path("controlplane.log"))
}

func (s state) down() error {
	pid := s.runningPID()
	if pid == 0 {
		fmt.Println("control plane not running")
		s.cleanup()
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, 60*time.Second) {
		// Its children die with it (Pdeathsig); remove what Stop would have.
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if !waitGone(pid, 10*time.Second) {
			return fmt.Errorf("pid %d did not exit", pid)
		}
		if b, err := os.ReadFile(s.path("rundir")); err == nil && strings.Contains(string(b), string(filepath.Separator)+".cache"+string(filepath.Separator)+"run"+string(filepath.Separator)) {
			os.RemoveAll(strings.TrimSpace(string(b)))
		}
	}
	s.cleanup()
	fmt.Println("control plane stopped")
	return nil
}

func (s state) cleanup() {
	for _, f := range []string{"pid", "kubeconfig", "rundir"} {
		os.Remove(s.path(f))
	}
}

func (s state) status() error {
	pid := s.runningPID()
	if pid == 0 {
		fmt.Println("control plane not running")
		return nil
	}
	if _, err := os.Stat(s.path("kubeconfig")); err != nil {
		fmt.Printf("control plane starting (pid %d)\n", pid)
		return nil
	}
	fmt.Printf("control plane running (pid %d)\nexport KUBECONFIG=%s\n", pid, s.path("kubeconfig"))
	return nil
}

// run starts the control plane and keeps it until SIGINT or SIGTERM.
func (s state) run(background bool) error {
	if pid := s.runningPID(); pid != 0 && pid != os.Getpid() {
		return fmt.Errorf("a control plane is already running (pid %d); make down first", pid)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.path("pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer s.cleanup()

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
	}
	cp, err := testenv.Start(ctx, testenv.Options{Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			logf("stop: %v", err)
		}
		logf("control plane stopped")
	}()
	if err := os.WriteFile(s.path("rundir"), []byte(cp.Dir()+"\n"), 0o644); err != nil {
		return err
	}
	// Written last and atomically: its presence means "ready".
	b, err := os.ReadFile(cp.Kubeconfig())
	if err != nil {
		return err
	}
	tmp := s.path("kubeconfig.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path("kubeconfig")); err != nil {
		return err
	}
	logf("ready: export KUBECONFIG=%s (kubectl: %s)", s.path("kubeconfig"), cp.Binaries().Kubectl)
	if !background {
		fmt.Printf("export KUBECONFIG=%s\n(Ctrl-C stops it)\n", s.path("kubeconfig"))
	}
	<-ctx.Done()
	logf("stopping")
	return nil
}

func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		// A zombie has exited; nobody may reap it if PID 1 does not.
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i >= 0 && i+2 < len(st) && (st[i+2] == 'Z' || st[i+2] == 'X') {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
