package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// envInit names the variable that turns a re-executed binary that links this
// package into a container's init step: its value is the path of the
// initSpec file. The step runs in init(), before main or TestMain, so any
// binary that imports package node (the e2e test binary, a demo command) is
// its own helper and nothing extra has to be built.
const envInit = "KOORDINATOR_TEST_NODE_INIT"

// initSpec is what the node tells the init step: how to build the
// container's root and what to execute in it. Paths named Host* are on the
// host; Target paths are inside the container.
type initSpec struct {
	HostRoot    string // an empty folder the container's tmpfs root is mounted on
	HostScratch string // an empty folder for a tmpfs holding overlay upper/work folders
	// SystemDirs are host folders bound read-only at the same path (or
	// recreated as the same symlink when they are symlinks on the host).
	SystemDirs []string
	// OverlayEtc mounts an overlay over the host's /etc (writable, on the
	// scratch tmpfs), so mount points like /etc/podinfo can be made; without
	// it /etc is a plain folder on the tmpfs root.
	OverlayEtc bool
	Binds      []bindMount // image content, volumes, termination log, in order
	Files      []fileSpec  // small files written into the root (/etc/hosts, ...)
	Hostname   string
	Argv       []string
	Env        []string
	WorkingDir string
	// HostStartError receives a one-line message when the container cannot be
	// started (mount failure, command not found); the node then reports a
	// StartError instead of a plain exit.
	HostStartError string
}

type bindMount struct {
	Source   string // host path (file or folder)
	Target   string // path inside the container
	ReadOnly bool
}

type fileSpec struct {
	Target  string
	Content string
}

// startErrorExitCode is the init step's exit code when it could not exec the
// container's command; containerd reports such a container with exit code 128
// and reason StartError, and so does the node.
const startErrorExitCode = 128

func init() {
	if path := os.Getenv(envInit); path != "" {
		os.Exit(runInit(path))
	}
}

// runInit runs as PID 1 of the container's fresh user, mount, PID and UTS
// namespaces (uid 0 inside, mapped to the node's uid). It builds the root,
// pivots into it, and execs the container's command, which so becomes PID 1.
// It returns only on failure.
func runInit(specPath string) int {
	fail := func(f *os.File, err error) int {
		msg := strings.ReplaceAll(err.Error(), "\n", " ")
		fmt.Fprintf(os.Stderr, "local test node: %s\n", msg)
		if f != nil {
			f.WriteString(msg)
			f.Close()
		}
		return startErrorExitCode
	}
	b, err := os.ReadFile(specPath)
	if err != nil {
		return fail(nil, err)
	}
	var s initSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return fail(nil, err)
	}
	// Opened before pivot_root, which makes host paths unreachable; close on
	// exec so the container never inherits it.
	errFile, err := os.OpenFile(s.HostStartError, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return fail(nil, err)
	}
	if err := buildRoot(&s); err != nil {
		return fail(errFile, fmt.Errorf("create container root: %w", err))
	}
	os.Clearenv()
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	if len(s.Argv) == 0 {
		return fail(errFile, errors.New("no command specified"))
	}
	wd := s.WorkingDir
	if wd == "" {
		wd = "/"
	}
	if err := os.Chdir(wd); err != nil {
		return fail(errFile, fmt.Errorf("working directory: %w", err))
	}
	path := s.Argv[0]
	if !strings.Contains(path, "/") {
		if path, err = exec.LookPath(path); err != nil {
			return fail(errFile, fmt.Errorf("exec: %q: executable file not found in $PATH", s.Argv[0]))
		}
	}
	err = syscall.Exec(path, s.Argv, os.Environ())
	return fail(errFile, fmt.Errorf("exec %s: %w", s.Argv[0], err))
}

// lockedFlags maps statfs flags to the mount flags a bind remount must keep:
// in a user namespace the kernel refuses a remount that would drop nosuid,
// nodev, noexec or the atime flags of a mount owned by the outer namespace.
func lockedFlags(path string) uintptr {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	var f uintptr
	for _, m := range []struct{ st, ms uintptr }{
		{2, syscall.MS_NOSUID}, {4, syscall.MS_NODEV}, {8, syscall.MS_NOEXEC},
		{1024, syscall.MS_NOATIME}, {2048, syscall.MS_NODIRATIME}, {4096, syscall.MS_RELATIME},
	} {
		if uintptr(st.Flags)&m.st != 0 {
			f |= m.ms
		}
	}
	return f
}

func bind(src, dst string, readOnly bool) error {
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	if readOnly {
		flags := syscall.MS_REMOUNT | syscall.MS_BIND | syscall.MS_RDONLY | lockedFlags(dst)
		if err := syscall.Mount("", dst, "", uintptr(flags), ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", dst, err)
		}
	}
	return nil
}

// mountPoint makes an empty file or folder at dst to mount src on.
func mountPoint(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func buildRoot(s *initSpec) error {
	// Nothing mounted here may reach the host's mount table.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	root := s.HostRoot
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs root: %w", err)
	}
	if err := syscall.Mount("tmpfs", s.HostScratch, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("tmpfs scratch: %w", err)
	}
	in := func(p string) string { return filepath.Join(root, p) }

	for _, d := range s.SystemDirs {
		st, err := os.Lstat(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(d)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, in(d)); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return err
		}
		if err := bind(d, in(d), true); err != nil {
			return err
		}
	}

	if s.OverlayEtc {
		upper, work := filepath.Join(s.HostScratch, "etc-upper"), filepath.Join(s.HostScratch, "etc-work")
		for _, d := range []string{upper, work, in("/etc")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		opts := "lowerdir=/etc,upperdir=" + upper + ",workdir=" + work
		if err := syscall.Mount("overlay", in("/etc"), "overlay", 0, opts); err != nil {
			return fmt.Errorf("overlay on /etc: %w", err)
		}
	}
	for _, d := range []string{"/etc", "/tmp", "/proc", "/dev", "/run", "/var/tmp"} {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(in("/tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(in("/var/tmp"), 0o1777); err != nil {
		return err
	}
	if _, err := os.Lstat(in("/var/run")); errors.Is(err, os.ErrNotExist) {
		if err := os.Symlink("../run", in("/var/run")); err != nil {
			return err
		}
	}

	// /proc of the container's own PID namespace.
	if err := syscall.Mount("proc", in("/proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount proc: %w", err)
	}
	// A minimal /dev: a tmpfs with the host's harmless device nodes bound in.
	if err := syscall.Mount("tmpfs", in("/dev"), "tmpfs", syscall.MS_NOSUID, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs /dev: %w", err)
	}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if _, err := os.Stat("/dev/" + dev); err != nil {
			continue
		}
		if err := mountPoint("/dev/"+dev, in("/dev/"+dev)); err != nil {
			return err
		}
		if err := bind("/dev/"+dev, in("/dev/"+dev), false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "core": "/proc/kcore",
	} {
		if err := os.Symlink(target, in("/dev/"+name)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(in("/dev/shm"), 0o1777); err != nil {
		return err
	}
	if err := syscall.Mount("shm", in("/dev/shm"), "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("tmpfs /dev/shm: %w", err)
	}

	for _, f := range s.Files {
		if err := os.MkdirAll(filepath.Dir(in(f.Target)), 0o755); err != nil {
			return err
		}
		// Replace rather than overwrite: without root, a file of the host's /etc seen through the
		// overlay belongs to an unmapped owner and cannot be opened for writing, but the folder
		// entry can be replaced.
		if err := os.Remove(in(f.Target)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(in(f.Target), []byte(f.Content), 0o644); err != nil {
			return err
		}
	}
	for _, m := range s.Binds {
		dst := in(m.Target)
		if err := mountPoint(m.Source, dst); err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
		if err := bind(m.Source, dst, m.ReadOnly); err != nil {
			return err
		}
	}

	old := in("/.oldroot")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := syscall.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := syscall.Unmount("/.oldroot", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host root: %w", err)
	}
	if err := os.Remove("/.oldroot"); err != nil {
		return err
	}
	if s.Hostname != "" {
		if err := syscall.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	return nil
}
