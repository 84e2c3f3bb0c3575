package node

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// defaultPath is the PATH a container gets when its image sets none (the
// one Docker and containerd default to).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// hostSystemDirs are the host folders a busybox-like image sees, read-only.
var hostSystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// imageRoot is what an image maps to on this node.
type imageRoot struct {
	id         string   // reported as imageID
	entrypoint []string // the image's ENTRYPOINT
	cmd        []string // the image's CMD
	env        []string // the image's ENV
	systemDirs []string
	overlayEtc bool
	binds      []bindMount
}

// ErrImagePull-like failure: an image the node cannot map.
type imageError struct {
	image  string
	volume bool // of an image volume, which maps only the project's image
}

func (e *imageError) Error() string {
	if e.volume {
		return fmt.Sprintf("local test node: image volume's image %q has no local content: image volumes map only "+
			"the project's image (any repository named .../koordinator); no image is ever pulled", e.image)
	}
	return fmt.Sprintf("local test node: image %q has no local root: it maps only the project's image "+
		"(any repository named .../koordinator) and busybox images; no image is ever pulled", e.image)
}

// repositoryName returns the last path element of an image reference's
// repository: "ghcr.io/x/koordinator:latest" → "koordinator".
func repositoryName(image string) string {
	ref, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref[strings.LastIndex(ref, "/")+1:]
}

// mapImage maps an image to a local root; see design.md, "The local test node".
func (n *Node) mapImage(image string) (*imageRoot, error) {
	switch name := repositoryName(image); {
	case name == "koordinator":
		// FROM scratch, the binary at /bin/koordinator, ENTRYPOINT
		// ["/bin/koordinator", "--install"] (Dockerfile).
		return &imageRoot{
			id:         "local://koordinator@" + n.koordinatorDigest,
			entrypoint: []string{"/bin/koordinator", "--install"},
			env:        []string{"PATH=" + defaultPath},
			binds:      []bindMount{{Source: n.opts.KoordinatorBinary, Target: "/bin/koordinator", ReadOnly: true}},
		}, nil
	case strings.HasPrefix(name, "busybox"):
		r := &imageRoot{
			id:         "local://host-system-folders",
			cmd:        []string{"sh"},
			env:        []string{"PATH=" + defaultPath},
			systemDirs: hostSystemDirs,
			overlayEtc: true,
		}
		if n.busyboxDir != "" {
			// Applets the host lacks (httpd, wget, ...), first in PATH.
			r.binds = append(r.binds, bindMount{Source: n.busyboxDir, Target: "/usr/local/bin", ReadOnly: true})
		}
		return r, nil
	}
	return nil, &imageError{image: image}
}

// imageVolumeDir returns a host folder holding what an image volume of
// image shows (KEP-4639): the image's files, never written to (containers
// bind it read-only). Only the project's image maps, by the same rule as
// mapImage: a folder with the freshly built binary at bin/koordinator (mode
// 0755), made once per node under its work folder. Any other image is an
// imageError, as for a container's image.
func (n *Node) imageVolumeDir(image string) (string, error) {
	if repositoryName(image) != "koordinator" {
		return "", &imageError{image: image, volume: true}
	}
	if n.opts.KoordinatorBinary == "" {
		return "", fmt.Errorf("local test node: image %q: the node was started without Options.KoordinatorBinary", image)
	}
	n.imageMu.Lock()
	defer n.imageMu.Unlock()
	dir := filepath.Join(n.opts.WorkDir, "images", "koordinator")
	if n.koordinatorImageDir != "" {
		return n.koordinatorImageDir, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return "", err
	}
	src, err := os.Open(n.opts.KoordinatorBinary)
	if err != nil {
		return "", err
	}
	defer src.Close()
	target := filepath.Join(dir, "bin", "koordinator")
	tmp, err := os.CreateTemp(filepath.Dir(target), ".koordinator-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return "", err
	}
	n.koordinatorImageDir = dir
	return dir, nil
}

// argv applies Kubernetes' command/args rules: command replaces the
// entrypoint, args replace the image's cmd.
func argv(c *corev1.Container, img *imageRoot) []string {
	switch {
	case len(c.Command) > 0:
		return append(append([]string(nil), c.Command...), c.Args...)
	case len(c.Args) > 0:
		return append(append([]string(nil), img.entrypoint...), c.Args...)
	}
	return append(append([]string(nil), img.entrypoint...), img.cmd...)
}

// expand replaces $(VAR) references by their values as the kubelet does
// (k8s.io/kubernetes/third_party/forked/golang/expansion): $$ is a literal $,
// an undefined reference is left as it is.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// envList keeps variables in first-definition order with later values winning.
type envList struct {
	keys []string
	vals map[string]string
}

func (e *envList) set(k, v string) {
	if e.vals == nil {
		e.vals = map[string]string{}
	}
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *envList) lookup(k string) (string, bool) { v, ok := e.vals[k]; return v, ok }

func (e *envList) list() []string {
	out := make([]string, 0, len(e.keys))
	for _, k := range e.keys {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// instance is one run of a container: the init step's process, which execs
// the container's command and so is its PID 1.
type instance struct {
	id        string // 64 hex digits; containerID is "local://" + id
	container string
	restart   int32 // restartCount when it was started
	cmd       *exec.Cmd
	pid       int    // on the host
	pidNS     string // /proc/<pid>/ns/pid link target, to find leftovers
	// nsHold keeps the PID namespace open until Leftovers has looked: a namespace's
	// identity (its inode number) is reused once it is gone, by any other container's on the
	// machine (the real test node's, run beside this one, makes many).
	nsHold    *os.File
	startedAt time.Time
	logPath   string
	env       []string // for exec probes
	done      chan struct{}

	// Valid once done is closed.
	exitCode   int32
	finishedAt time.Time
	startError string // set when the command never ran (StartError)
	signaled   bool
}

func (i *instance) exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the instance's PID 1 (errors ignored: it may be gone).
func (i *instance) signal(sig syscall.Signal) {
	if !i.exited() {
		_ = i.cmd.Process.Signal(sig)
	}
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// spawnRequest is served by the spawner goroutine.
type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

var (
	spawnOnce sync.Once
	spawnCh   = make(chan spawnRequest)
)

// startLocked starts cmd from one goroutine locked to its OS thread for the
// life of the process: Pdeathsig fires when the thread that forked the child
// exits (golang/go#27505), so this way it means "the node's process died".
func startLocked(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread()
			for req := range spawnCh {
				req.reply <- req.cmd.Start()
			}
		}()
	})
	reply := make(chan error, 1)
	spawnCh <- spawnRequest{cmd: cmd, reply: reply}
	return <-reply
}

// startInstance writes the init spec and starts the init step in fresh user,
// mount, PID and UTS namespaces. onExit runs (in its own goroutine) once the
// instance has exited and its output is flushed to the log.
func (n *Node) startInstance(dir string, spec *initSpec, inst *instance, onExit func(*instance)) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	spec.HostRoot = filepath.Join(dir, "root")
	spec.HostScratch = filepath.Join(dir, "scratch")
	spec.HostStartError = filepath.Join(dir, "start-error")
	for _, d := range []string{spec.HostRoot, spec.HostScratch} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	specPath := filepath.Join(dir, "init.json")
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return err
	}
	logFile, err := os.OpenFile(inst.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	lw := &logWriter{f: logFile}
	cmd := exec.Command(n.exe)
	cmd.Args = []string{"koordinator-test-node-init"}
	cmd.Env = []string{envInit + "=" + specPath}
	cmd.Stdout = lw.stream("stdout")
	cmd.Stderr = lw.stream("stderr")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := startLocked(cmd); err != nil {
		logFile.Close()
		return fmt.Errorf("start the container's init step: %w", err)
	}
	inst.cmd = cmd
	inst.pid = cmd.Process.Pid
	inst.startedAt = time.Now()
	inst.done = make(chan struct{})
	inst.pidNS, _ = os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", inst.pid))
	inst.nsHold, _ = os.Open(fmt.Sprintf("/proc/%d/ns/pid", inst.pid))
	n.track(inst)
	go func() {
		err := cmd.Wait() // also waits until the output is copied
		inst.finishedAt = time.Now()
		lw.flush()
		logFile.Close()
		inst.exitCode = exitCode(cmd.ProcessState, err)
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			inst.signaled = true
		}
		if msg, _ := os.ReadFile(spec.HostStartError); len(msg) > 0 && inst.exitCode == startErrorExitCode {
			inst.startError = strings.TrimSpace(string(msg))
		}
		close(inst.done)
		onExit(inst)
	}()
	return nil
}

func exitCode(ps *os.ProcessState, err error) int32 {
	if ps == nil {
		if err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ps.ExitCode())
}

// logWriter writes a container's stdout and stderr to one file in the CRI
// log format the kubelet reads (`<RFC3339Nano> <stream> <F|P> <text>`), so
// every line carries the time the node received it.
type logWriter struct {
	mu      sync.Mutex
	f       io.Writer
	partial map[string]*bytes.Buffer
}

type streamWriter struct {
	lw     *logWriter
	stream string
}

func (lw *logWriter) stream(name string) io.Writer { return &streamWriter{lw: lw, stream: name} }

func (s *streamWriter) Write(p []byte) (int, error) {
	lw := s.lw
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.partial == nil {
		lw.partial = map[string]*bytes.Buffer{}
	}
	buf := lw.partial[s.stream]
	if buf == nil {
		buf = &bytes.Buffer{}
		lw.partial[s.stream] = buf
	}
	buf.Write(p)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for {
		line, err := buf.ReadBytes('\n')
		if err != nil { // no newline yet: keep the rest for later
			rest := append([]byte(nil), line...)
			buf.Reset()
			buf.Write(rest)
			break
		}
		fmt.Fprintf(lw.f, "%s %s F %s", now, s.stream, line)
	}
	return len(p), nil
}

// flush writes unterminated output as a final partial line.
func (lw *logWriter) flush() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	streams := make([]string, 0, len(lw.partial))
	for k := range lw.partial {
		streams = append(streams, k)
	}
	sort.Strings(streams)
	for _, k := range streams {
		if b := lw.partial[k]; b.Len() > 0 {
			fmt.Fprintf(lw.f, "%s %s P %s\n", now, k, b.String())
			b.Reset()
		}
	}
}

// LogLine is one line a container wrote, as the node received it.
type LogLine struct {
	Time   time.Time
	Stream string // stdout or stderr
	Text   string // without the trailing newline
}

// ReadLogFile parses a log file in the CRI format (RFC 3339 time, stream, P or F, text), which
// this node and the kubelet both write.
func ReadLogFile(path string) ([]LogLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []LogLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			continue
		}
		text := ""
		if len(parts) == 4 {
			text = parts[3]
		}
		out = append(out, LogLine{Time: t, Stream: parts[1], Text: text})
	}
	return out, sc.Err()
}

// findBusybox returns a folder holding a static busybox and links for the
// applets the host's system folders lack, made under workDir from
// binary; "" when there is no binary.
func findBusybox(binary, workDir string) (string, error) {
	if binary == "" {
		return "", nil
	}
	if _, err := os.Stat(binary); err != nil {
		return "", nil
	}
	out, err := exec.Command(binary, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list: %w", binary, err)
	}
	dir := filepath.Join(workDir, "busybox-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	data, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		onHost := false
		for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			if _, err := os.Stat(filepath.Join(d, applet)); err == nil {
				onHost = true
				break
			}
		}
		if !onHost {
			if err := os.Symlink("busybox", filepath.Join(dir, applet)); err != nil && !errors.Is(err, os.ErrExist) {
				return "", err
			}
		}
	}
	return dir, nil
}

// FetchBusybox extracts Debian's busybox-static into cacheDir/busybox once
// (apt-get download needs no root) and returns the binary's path.
func FetchBusybox(cacheDir string, logf func(string, ...any)) string {
	target := filepath.Join(cacheDir, "busybox", "busybox")
	if _, err := os.Stat(target); err == nil {
		return target
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return ""
	}
	tmp, err := os.MkdirTemp(cacheDir, "busybox-fetch-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(tmp)
	logf("node: fetching Debian's busybox-static once into %s", filepath.Dir(target))
	dl := exec.Command("apt-get", "download", "busybox-static")
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		logf("node: apt-get download busybox-static failed (%v): %s; busybox images get only the host's tools", err, bytes.TrimSpace(out))
		return ""
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*.deb"))
	if len(debs) == 0 {
		return ""
	}
	x := filepath.Join(tmp, "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		logf("node: dpkg-deb -x failed (%v): %s", err, bytes.TrimSpace(out))
		return ""
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return ""
	}
	if err := os.Rename(filepath.Join(x, "bin", "busybox"), target); err != nil {
		return ""
	}
	return target
}
