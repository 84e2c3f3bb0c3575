// Command helper is the child that hack/benchreaction runs under koordinator. It records one
// moment as nanoseconds of the host's wall clock (time.Now().UnixNano()) in FILE, which it opens
// before it says it is ready, so that recording costs one write(2):
//
//	helper exit FILE   the dependency's child: prints "ready", reads stdin to its end, records the
//	                   time and exits 0 (the benchmark closes stdin to make it exit)
//	helper term FILE   the sidecar's child: prints "ready" once SIGTERM is caught, records the time
//	                   it receives SIGTERM and exits 0
//	helper start FILE  the cold-start child: records the time as its first instruction, then exits 0
//	helper hold        the idle child: prints "ready" and waits for SIGTERM (no time limit), then
//	                   exits 0
//	helper cgexec DIR PROG [ARG...]
//	                   joins the cgroup DIR (writes its pid to DIR/cgroup.procs) and execs PROG, so
//	                   that all of PROG's memory is charged there (cgroup v1 cannot start a
//	                   process in a cgroup)
//
// Each dies with its parent (PR_SET_PDEATHSIG); all but hold give up after a minute, so that
// nothing is left running if the benchmark dies.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	began := time.Now().UnixNano()
	if len(os.Args) >= 4 && os.Args[1] == "cgexec" {
		cgexec(os.Args[2], os.Args[3:])
	}
	if len(os.Args) == 3 && os.Args[1] == "start" {
		if err := os.WriteFile(os.Args[2], []byte(strconv.FormatInt(began, 10)), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	hold := len(os.Args) == 2 && os.Args[1] == "hold"
	if !hold && (len(os.Args) != 3 || (os.Args[1] != "exit" && os.Args[1] != "term")) {
		fmt.Fprintln(os.Stderr, "usage: helper exit|term|start FILE, or helper hold")
		os.Exit(2)
	}
	parent := os.Getppid()
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if os.Getppid() != parent { // the parent died before the prctl
		os.Exit(3)
	}
	if hold {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		if _, err := os.Stdout.WriteString("ready\n"); err != nil {
			os.Exit(2)
		}
		<-sigs
		os.Exit(0)
	}
	time.AfterFunc(time.Minute, func() { os.Exit(3) })

	f, err := os.OpenFile(os.Args[2], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	var sigs chan os.Signal
	if os.Args[1] == "term" {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
	}
	if _, err := os.Stdout.WriteString("ready\n"); err != nil {
		os.Exit(2)
	}
	if sigs != nil {
		<-sigs
	} else {
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	now := time.Now().UnixNano()
	if _, err := f.WriteString(strconv.FormatInt(now, 10)); err != nil {
		os.Exit(2)
	}
	os.Exit(0)
}

// cgexec joins the cgroup dir and replaces the helper with argv; it returns only by exiting.
func cgexec(dir string, argv []string) {
	if err := os.WriteFile(dir+"/cgroup.procs", []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(127)
}
