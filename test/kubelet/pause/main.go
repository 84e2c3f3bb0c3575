// Command pause is the real test node's sandbox image: it holds a pod's namespaces open and does
// nothing else, as the kubelet's pause image does. It waits for SIGINT or SIGTERM and reaps any
// child handed to it, since it may be PID 1 of the pod's PID namespace. Test code only.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
