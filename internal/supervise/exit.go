package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Exit is how the child ended.
type Exit struct {
	Code         int            // exit status when it exited by itself
	Signal       syscall.Signal // the signal that killed it, 0 if it exited
	KilledByStop bool           // Stop had to send SIGKILL (and that SIGKILL is what ended it)
}

// ExitCode is the shell-style code: Code, or 128+Signal when a signal killed the child.
func (e Exit) ExitCode() int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

// StartError is why Start could not run the command, with the exit code a shell would give.
type StartError struct {
	Code int    // 127: not found; 126: found but not executable, or any other exec failure
	Name string // the command as given (argv[0])
	Err  error  // the cause: exec.ErrNotFound or a syscall.Errno, possibly wrapped with a hint
}

func (e *StartError) Error() string { return fmt.Sprintf("cannot run %q: %v", e.Name, e.Err) }
func (e *StartError) Unwrap() error { return e.Err }

// defaultPath is searched when PATH is not set at all, as container runtimes do (it is the
// value Docker and containerd give a container whose image sets none).
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// lookPath finds name like a POSIX shell: a name with a slash is used as it is (execve decides);
// otherwise the first executable regular file in PATH wins, an empty PATH entry meaning the
// current directory. When the name exists in PATH but is nowhere executable, the first such
// file is returned, so that execve fails with EACCES and the code is 126, as in bash and dash.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	dirs, ok := os.LookupEnv("PATH")
	if !ok {
		dirs = defaultPath
	}
	denied := ""
	for _, dir := range filepath.SplitList(dirs) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil || st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
			continue
		}
		if syscall.Access(p, 1 /* X_OK */) == nil {
			return p, nil
		}
		if denied == "" {
			denied = p
		}
	}
	if denied != "" {
		return denied, nil
	}
	return "", exec.ErrNotFound
}

// execError maps a ForkExec failure to the shell's code: 127 only when the file does not
// exist, 126 for everything else.
func execError(name, path string, err error) *StartError {
	where := ""
	if path != name {
		where = path + ": "
	}
	switch {
	case errors.Is(err, syscall.ENOENT):
		var st syscall.Stat_t
		if syscall.Stat(path, &st) != nil {
			return &StartError{Code: 127, Name: name, Err: err}
		}
		// execve says ENOENT about a file that exists: what is missing is the interpreter
		// named by its #! line, or the dynamic loader of a binary built for another libc
		// (a glibc binary in a musl or FROM scratch image). Shells give 126 here too.
		return &StartError{Code: 126, Name: name, Err: fmt.Errorf("%s%w (the file exists: its #! interpreter or its dynamic loader is missing)", where, err)}
	case errors.Is(err, syscall.ENOEXEC):
		// A shell would run such a file as a shell script; koordinator needs no shell in the
		// image and does not guess.
		return &StartError{Code: 126, Name: name, Err: fmt.Errorf("%s%w (not a binary for this machine, or a script without a #! line)", where, err)}
	default:
		if where != "" {
			err = fmt.Errorf("%s%w", where, err)
		}
		return &StartError{Code: 126, Name: name, Err: err}
	}
}
