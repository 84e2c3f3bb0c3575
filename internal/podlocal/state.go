// Package podlocal is the pod-local channel: the wrapped containers of one pod tell each other
// directly, through files in the emptyDir that holds the koordinator binary, when their children
// start and exit.
//
// Each wrapper publishes its child's lifecycle in <folder>/.state/<container name> (Publisher):
// "running" (pid, start time) once the child has started, then "exited" (exit code, time) the
// moment it has exited. A wrapper with stop dependencies watches those files (Watch: inotify plus
// a slow poll) and hands the parsed states to its decision loop, which judges an exit against
// the pod spec (internal/watch.LocalExitFinal). Why it exists: while a pod is being deleted the
// kubelet writes no container state until every container has stopped, so the API alone would
// hold a sidecar until the grace period runs out; and a file event is a local, sub-millisecond
// signal where the API is a round trip.
//
// A file is one small JSON object, written atomically (temporary file in .state, rename):
//
//	{"container":"main","instance":"5f0c…","state":"running","pid":12,"startedAt":"2026-11-22T20:50:00.123456789Z"}
//	{"container":"main","instance":"5f0c…","state":"exited","pid":12,"startedAt":"…","exitCode":0,"exitedAt":"…"}
//	{"container":"main","instance":"5f0c…","state":"restarting","pid":12,"startedAt":"…","exitCode":1,"exitedAt":"…"}
//
// instance is a random id per wrapper process (a container instance); exitCode is the code the
// container itself exits with (koordinator's own exit code, which is what the kubelet's restart
// rules look at); terminating is true when the wrapper had received SIGTERM or SIGINT before its
// child exited, i.e. the kubelet was stopping the container. "restarting" is a child that exited
// while its wrapper stays and starts it again (the spec's restartChild): the container has not
// exited, and its next "running" has restarts one higher. A wrapper that exits without ever
// starting its child (a SIGTERM while it waits, a configuration error) publishes "exited" without
// pid and startedAt. No fsync: the readers are processes of the same pod reading the same page
// cache, a torn file after a node crash is ignored as malformed, and fsync on a disk-backed
// emptyDir costs milliseconds on the path a sidecar is waiting on.
//
// The package never follows a symlink in .state (nor .state itself when it is one), treats
// every file as untrusted input (size limit, strict validation, the file's container field must
// equal its name) and does not log: problems come back as errors and Warning values, and the
// caller decides what to say. It has no Kubernetes import.
package podlocal

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// DirName is the folder, next to the koordinator binary, that holds the state files.
const DirName = ".state"

// MaxFileSize bounds what is read of a state file; a larger one is ignored as not ours.
const MaxFileSize = 4096

const (
	phaseRunning    = "running"
	phaseExited     = "exited"
	phaseRestarting = "restarting"
)

// State is what one wrapper says about its child.
type State struct {
	Container string    // the container's name; equals the file's name
	Instance  string    // random id of the wrapper process that wrote it
	Pid       int       // the child's pid; 0 when it never started
	StartedAt time.Time // when the child started; zero when it never started
	Exited    bool      // the child has exited (or will never start) and the wrapper is ending
	ExitCode  int       // the container's exit code, when Exited; the child's, when Restarting
	ExitedAt  time.Time // when Exited or Restarting
	// Restarting: the child exited, but the wrapper starts it again; the container runs on.
	Restarting bool
	Restarts   int // how often the wrapper has started its child again

	// Terminating: the wrapper had received SIGTERM/SIGINT before the exit. The kubelet was
	// stopping the container (deletion, eviction, a failed probe, a changed spec), so whether it
	// runs again does not follow from the exit code.
	Terminating bool
}

// wire is the JSON form of State.
type wire struct {
	Container   string    `json:"container"`
	Instance    string    `json:"instance"`
	State       string    `json:"state"`
	Pid         int       `json:"pid,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	ExitCode    *int      `json:"exitCode,omitempty"`
	ExitedAt    time.Time `json:"exitedAt,omitzero"`
	Terminating bool      `json:"terminating,omitempty"`
	Restarts    int       `json:"restarts,omitempty"`
}

// Marshal encodes s as a state file's content. It refuses a State that Parse would reject.
func Marshal(s State) ([]byte, error) {
	w := wire{
		Container: s.Container, Instance: s.Instance, State: phaseRunning,
		Pid: s.Pid, StartedAt: s.StartedAt.UTC(), Terminating: s.Terminating, Restarts: s.Restarts,
	}
	if s.Exited || s.Restarting {
		code := s.ExitCode
		w.State, w.ExitCode, w.ExitedAt = phaseExited, &code, s.ExitedAt.UTC()
		if s.Restarting && !s.Exited {
			w.State = phaseRestarting
		}
	}
	if err := w.check(s.Container); err != nil {
		return nil, err
	}
	return json.Marshal(w)
}

// Parse decodes and validates the content of the state file called name. Unknown fields are
// allowed (a newer koordinator may add some); everything it relies on is checked.
func Parse(name string, b []byte) (State, error) {
	if len(b) > MaxFileSize {
		return State{}, fmt.Errorf("%d bytes, more than the %d a state file has", len(b), MaxFileSize)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return State{}, fmt.Errorf("not a state file: %w", err)
	}
	if err := w.check(name); err != nil {
		return State{}, err
	}
	s := State{
		Container: w.Container, Instance: w.Instance, Pid: w.Pid, StartedAt: w.StartedAt,
		Exited: w.State == phaseExited, ExitedAt: w.ExitedAt, Terminating: w.Terminating,
		Restarting: w.State == phaseRestarting, Restarts: w.Restarts,
	}
	if w.ExitCode != nil {
		s.ExitCode = *w.ExitCode
	}
	return s, nil
}

// check validates w as the file called name.
func (w *wire) check(name string) error {
	switch {
	case !spec.IsContainerName(name):
		return fmt.Errorf("%q is not a container name", name)
	case w.Container != name:
		return fmt.Errorf("its container field %q differs from its name %q", w.Container, name)
	case w.Instance == "" || len(w.Instance) > 64:
		return errors.New("instance missing or longer than 64 bytes")
	case w.Pid < 0:
		return fmt.Errorf("negative pid %d", w.Pid)
	case w.Restarts < 0:
		return fmt.Errorf("negative restarts %d", w.Restarts)
	case (w.Pid == 0) != w.StartedAt.IsZero():
		return errors.New("pid and startedAt must be given together")
	}
	switch w.State {
	case phaseRunning:
		if w.Pid == 0 || w.ExitCode != nil || !w.ExitedAt.IsZero() {
			return errors.New(`state "running" needs pid and startedAt and no exitCode or exitedAt`)
		}
	case phaseExited, phaseRestarting:
		if w.ExitCode == nil || *w.ExitCode < 0 || *w.ExitCode > 255 || w.ExitedAt.IsZero() {
			return fmt.Errorf("state %q needs exitCode (0-255) and exitedAt", w.State)
		}
		if w.State == phaseRestarting && w.Pid == 0 {
			return errors.New(`state "restarting" needs the pid and startedAt of the child that exited`)
		}
	default:
		return fmt.Errorf(`state %q is none of "running", "exited" and "restarting"`, w.State)
	}
	return nil
}
