package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/koordinator-dev/koordinator/test/proctest"
)

// stopGrace is how long a component gets between SIGTERM and SIGKILL.
const stopGrace = 10 * time.Second

// process is one child process (etcd, kube-apiserver, ...) in its own process
// group, with stdout and stderr appended to a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd.Wait has returned
	waitErr error         // valid after done is closed
}

// spawnRequest is served by the spawner goroutine.
type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

var spawnCh = make(chan spawnRequest)

func init() {
	// Pdeathsig fires when the *thread* that forked the child exits, not when
	// the process does (golang/go#27505). All children are therefore forked
	// from one goroutine locked to its OS thread for the life of the process,
	// so the signal means "the test process died", nothing else.
	go func() {
		runtime.LockOSThread()
		for req := range spawnCh {
			req.reply <- req.cmd.Start()
		}
	}()
}

// startProcess starts bin with args and the test's environment plus env,
// logging to logPath (appended, so a restarted component keeps one log). The
// child gets its own process group and SIGKILL if the process that started it
// dies.
func startProcess(name, bin string, args, env []string, dir, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logFile, "=== %s: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(childEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	reply := make(chan error, 1)
	spawnCh <- spawnRequest{cmd: cmd, reply: reply}
	if err := <-reply; err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		fmt.Fprintf(logFile, "=== %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), name, exitDescription(p.waitErr))
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// childEnv is the environment for control-plane components: the test's own,
// minus variables that would point them at another cluster or proxy.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
			"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// exitStatus describes how the process ended, or "still running".
func (p *process) exitStatus() string {
	if !p.exited() {
		return "still running"
	}
	return exitDescription(p.waitErr)
}

// exited reports whether the process has exited (and been reaped).
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group and waits for the process to be reaped. Safe to call twice.
func (p *process) stop(grace time.Duration) error {
	pgid := p.pid() // Setpgid: the group id is the leader's pid
	if !p.exited() {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// Kill whatever is left in the group, even if the leader exited by itself.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

// failure describes a component that did not come up: what went wrong plus
// the tail of its log.
func (p *process) failure(what error) error {
	return fmt.Errorf("%s (pid %d, %s): %w\n--- last lines of %s ---\n%s",
		p.name, p.pid(), p.exitStatus(), what, p.logPath, tail(p.logPath, 40, 8192))
}

// tail returns at most the last n lines (and maxBytes bytes) of a file.
func tail(path string, n int, maxBytes int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	off := st.Size() - maxBytes
	if off < 0 {
		off = 0
	}
	buf, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	buf = bytes.TrimRight(buf, "\n")
	lines := strings.Split(string(buf), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // first line is probably cut
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// processAlive reports whether pid still names a live (non-zombie) process.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	if st, ok := proctest.Read(pid); ok {
		return !st.Exited()
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid)) // unreadable, not gone
	return err == nil
}

// Daemon is a long-running component of another test environment built on
// this one (the real test node's containerd and kubelet), started and
// stopped exactly as the control plane's own components are.
type Daemon struct{ p *process }

// StartDaemon starts bin with args in dir, with the test's environment (minus
// cluster and proxy variables) plus env, logging to logPath.
func StartDaemon(name, bin string, args, env []string, dir, logPath string) (*Daemon, error) {
	p, err := startProcess(name, bin, args, env, dir, logPath)
	if err != nil {
		return nil, err
	}
	return &Daemon{p: p}, nil
}

// Stop sends SIGTERM to the daemon's process group, then SIGKILL after grace.
func (d *Daemon) Stop(grace time.Duration) error { return d.p.stop(grace) }

// Exited reports whether the daemon has exited.
func (d *Daemon) Exited() bool { return d.p.exited() }

// Failure wraps what went wrong with how the daemon ended and its log's tail.
func (d *Daemon) Failure(what error) error { return d.p.failure(what) }
