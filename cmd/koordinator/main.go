// Command koordinator runs a container's real command and coordinates its start and stop with
// the other containers of the same Kubernetes pod.
//
//	koordinator [FLAGS] [--] COMMAND [ARG...]   run COMMAND under coordination
//	koordinator                                 with a stopAction in the spec: a stopper, no child
//	koordinator --install DIR                   copy this executable to DIR/koordinator
//	koordinator --check                         validate KOORDINATOR_SPEC, print the effective spec
//	koordinator --version | --help
//
// Environment:
//
//	KOORDINATOR_SPEC           JSON spec: name, startDeps, stopDeps, stopDelay, startTimeout,
//	                           probeInterval, stopSignal, stopTimeout, stopAction, restartChild,
//	                           api, podRestartPolicy, terminatedByStopDepExitCode,
//	                           killedByStopDepExitCode (README: "The spec")
//	KOORDINATOR_POD_NAME       this pod's name; else /etc/podinfo/name, POD_NAME, HOSTNAME
//	KOORDINATOR_POD_NAMESPACE  this pod's namespace; else /etc/podinfo/namespace, POD_NAMESPACE,
//	                           the service-account namespace file
//	KOORDINATOR_PODINFO_DIR    where the downward-API files are (default /etc/podinfo)
//	KUBECONFIG                 use this kubeconfig instead of the in-cluster configuration
//	KOORDINATOR_LOG_FORMAT     json (default) or console
//	KOORDINATOR_LOG_LEVEL      debug, info (default), warn, error or off
//	KOORDINATOR_LOCAL_STATE    on (default) or off: the pod-local channel, state files in .state/
//	                           next to this binary through which wrapped containers tell each
//	                           other their children's start and exit (off: the API alone decides)
//	KOORDINATOR_STATE_DIR      the folder (absolute) whose .state/ holds the pod-local channel, in
//	                           place of the binary's own folder (a read-only image volume)
//
// Exit codes: the child's own code; 128+N when a signal N killed it; terminatedByStopDepExitCode
// (0) or killedByStopDepExitCode (137) when it was stopped because its stop dependencies exited;
// 125 when koordinator itself cannot proceed; 126/127 when COMMAND cannot be run / is not found;
// 128+N for SIGTERM/SIGINT received before the child started; 0 for a stopper once it made its
// request.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Getenv, os.Stdout, os.Stderr))
}
