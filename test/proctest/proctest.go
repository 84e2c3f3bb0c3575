// Package proctest reads processes from /proc for tests of process supervision: who is whose
// parent, which group and session, whose terminal job, zombies, which PID namespace. Test code
// only.
package proctest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what /proc/<pid>/stat says of a process.
type Stat struct {
	Pid, PPid, Pgrp, Session int
	Tpgid                    int  // the foreground job of its terminal, -1 without one
	State                    byte // R, S, D, Z, T, ...
	Comm                     string
}

// Read parses /proc/<pid>/stat; ok is false when the process is gone.
func Read(pid int) (st Stat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return st, false
	}
	f := strings.Fields(s[end+1:]) // state ppid pgrp session tty_nr tpgid ...
	if len(f) < 6 {
		return st, false
	}
	st = Stat{Pid: pid, State: f[0][0], Comm: s[open+1 : end]}
	st.PPid, _ = strconv.Atoi(f[1])
	st.Pgrp, _ = strconv.Atoi(f[2])
	st.Session, _ = strconv.Atoi(f[3])
	st.Tpgid, _ = strconv.Atoi(f[5])
	return st, true
}

// All lists every process visible in /proc.
func All() []Stat {
	ents, _ := os.ReadDir("/proc")
	var ps []Stat
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if st, ok := Read(pid); ok {
				ps = append(ps, st)
			}
		}
	}
	return ps
}

// Exited reports whether the process has ended and only awaits its reaper (zombie or dead).
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// PIDNamespace names the process's PID namespace as /proc/<pid>/ns/pid links to it
// ("pid:[4026531836]"); "" when the process is gone.
func (s Stat) PIDNamespace() string { return PIDNamespace(s.Pid) }

// PIDNamespace names the PID namespace of pid, or of the calling process when pid is 0; "" when
// there is no such process.
func PIDNamespace(pid int) string {
	p := "self"
	if pid != 0 {
		p = strconv.Itoa(pid)
	}
	ns, _ := os.Readlink("/proc/" + p + "/ns/pid")
	return ns
}
