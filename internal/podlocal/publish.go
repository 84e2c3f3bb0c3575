package podlocal

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

const (
	// dirMode is world-writable with the sticky bit, like /tmp. The containers of a pod often
	// run as different users (a distroless proxy as 65532, the job as 1000), and whichever
	// wrapper comes first creates .state: with 0755 the others could not publish. The emptyDir
	// itself is 0777, so this exposes nothing new; the sticky bit keeps a container from
	// replacing or deleting a file another user wrote.
	dirMode  = 0o1777
	fileMode = 0o644
)

// ErrNotDir is returned for a .state (or a state file) that is a symlink or otherwise not what
// it must be; nothing is ever followed through a symlink.
var ErrNotDir = errors.New("is a symlink or not a directory")

// Dir is the folder of the state files for the folder holding the koordinator binary.
func Dir(folder string) string { return filepath.Join(folder, DirName) }

// ensureDir creates folder/.state when it is missing. A .state that exists is used as it is
// (whoever made it chose its mode); whether it is a real directory is checked where it is
// opened (openDir).
func ensureDir(folder string) error {
	dir := Dir(folder)
	err := syscall.Mkdir(dir, dirMode)
	if errors.Is(err, syscall.EEXIST) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	// The umask trimmed the mode; set it exactly, on the directory just made.
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.Fchmod(fd, dirMode); err != nil {
		return &os.PathError{Op: "chmod", Path: dir, Err: err}
	}
	return nil
}

// openDir opens dir without following a symlink in its last component.
func openDir(dir string) (int, error) {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return -1, &os.PathError{Op: "open", Path: dir, Err: ErrNotDir}
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// Publisher writes one container's state file. It is not safe for concurrent use; one wrapper
// has one Publisher.
type Publisher struct {
	folder string
	state  State
}

// NewPublisher prepares the state file of container name in folder/.state (folder is the one
// holding the koordinator binary). It touches nothing on disk until the first write.
func NewPublisher(folder, name string) (*Publisher, error) {
	if !spec.IsContainerName(name) {
		return nil, fmt.Errorf("%q is not a container name", name)
	}
	return &Publisher{folder: folder, state: State{Container: name, Instance: rand.Text()}}, nil
}

// Path is the state file's path.
func (p *Publisher) Path() string { return filepath.Join(Dir(p.folder), p.state.Container) }

// Instance is this wrapper's random instance id.
func (p *Publisher) Instance() string { return p.state.Instance }

// Started publishes that the child runs as pid since at. After Restarting it counts a restart.
func (p *Publisher) Started(pid int, at time.Time) error {
	if p.state.Restarting {
		p.state.Restarting, p.state.ExitCode, p.state.ExitedAt = false, 0, time.Time{}
		p.state.Restarts++
	}
	p.state.Pid, p.state.StartedAt = pid, at
	return p.write()
}

// Restarting publishes that the child exited with code at at and will be started again.
func (p *Publisher) Restarting(code int, at time.Time) error {
	p.state.Restarting, p.state.ExitCode, p.state.ExitedAt = true, code, at
	return p.write()
}

// Exited publishes that the container exits with code: its child exited at at, or it never
// started one. terminating says the wrapper had received SIGTERM/SIGINT before.
func (p *Publisher) Exited(code int, at time.Time, terminating bool) error {
	p.state.Exited, p.state.ExitCode, p.state.ExitedAt, p.state.Terminating = true, code, at, terminating
	return p.write()
}

func (p *Publisher) write() error {
	b, err := Marshal(p.state)
	if err != nil {
		return err
	}
	return writeFile(p.folder, p.state.Container, "."+p.state.Container+"."+p.state.Instance+".tmp", b)
}

// writeFile replaces folder/.state/name atomically with b: a new file tmp in the same folder
// (created exclusively, never through a symlink), mode 0644 whatever the umask, then swapped
// with name in one renameat2(RENAME_EXCHANGE) and the old content unlinked; a plain rename when
// there is no name yet (or the kernel lacks the flag). A reader finds the old state or the new
// one, never a partial file and never no file. The swap, not a rename over name: on ext4 a
// rename that replaces a file first forces the new file's data to disk (auto_da_alloc),
// 0.2-0.7 ms measured on the exit publish a stopping sidecar waits for. Neither follows a
// symlink at name.
func writeFile(folder, name, tmp string, b []byte) error {
	if err := ensureDir(folder); err != nil {
		return err
	}
	dir := Dir(folder)
	dfd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer syscall.Close(dfd)
	const flags = syscall.O_WRONLY | syscall.O_CREAT | syscall.O_EXCL | syscall.O_NOFOLLOW | syscall.O_CLOEXEC
	fd, err := syscall.Openat(dfd, tmp, flags, fileMode)
	if errors.Is(err, syscall.EEXIST) { // a leftover of this very instance: impossible but harmless
		_ = syscall.Unlinkat(dfd, tmp)
		fd, err = syscall.Openat(dfd, tmp, flags, fileMode)
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: filepath.Join(dir, tmp), Err: err}
	}
	err = writeAll(fd, b)
	if err == nil {
		err = syscall.Fchmod(fd, fileMode)
	}
	if e := syscall.Close(fd); err == nil {
		err = e
	}
	if err == nil {
		if unix.Renameat2(dfd, tmp, dfd, name, unix.RENAME_EXCHANGE) == nil {
			_ = syscall.Unlinkat(dfd, tmp) // what name held before
			return nil
		}
		// No name yet (ENOENT), or no RENAME_EXCHANGE on this kernel or filesystem (EINVAL).
		err = syscall.Renameat(dfd, tmp, dfd, name)
	}
	if err != nil {
		_ = syscall.Unlinkat(dfd, tmp)
		return &os.PathError{Op: "write", Path: filepath.Join(dir, name), Err: err}
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
