package e2e

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// quitServerScript serves GET /ready and POST /cgi-bin/quitquitquit on 127.0.0.1:port with
// busybox httpd, as a proxy with an admin endpoint does; the request ends it and the script says
// "<name>: asked to quit" and exits 0. A SIGTERM would say "<name>: got SIGTERM" instead.
func quitServerScript(name, port string) string {
	return `trap 'echo ` + name + `: got SIGTERM; exit 0' TERM
mkdir -p /tmp/www/cgi-bin
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho quitting\nkill "$(cat /tmp/httpd.pid)"\n' > /tmp/www/cgi-bin/quitquitquit
chmod +x /tmp/www/cgi-bin/quitquitquit
httpd -f -p 127.0.0.1:` + port + ` -h /tmp/www & echo $! > /tmp/httpd.pid
touch ` + readyFile + `
echo ` + name + `: serving
wait
echo ` + name + `: asked to quit
`
}

// TestStopActionOnAWrappedChild: a wrapped proxy whose spec has a stopAction is stopped by the
// request, not by a signal, once main has exited; main's optional start dependency on a mesh
// container the pod does not have is skipped.
func TestStopActionOnAWrappedChild(t *testing.T) {
	parallel(t)
	ns := coordinatedNamespace(t, "e2e-stopaction")
	createJob(t, ns, "stopaction", 0, podSpec(corev1.RestartPolicyNever, 30, nil,
		readyOnFile(wrapped("proxy", `{"stopDeps":["main"],"stopAction":{"http":"POST http://127.0.0.1:15031/cgi-bin/quitquitquit"}}`,
			quitServerScript("proxy", "15031"))),
		wrapped("main", `{"startDeps":["proxy",{"name":"istio-proxy","optional":true}]}`, workScript("main", 2)),
	))
	waitJobComplete(t, ns, "stopaction", 2*time.Minute)
	pod := jobPod(t, ns, "stopaction")
	expectTerminated(t, pod, "proxy", 0, 0)
	expectTerminated(t, pod, "main", 0, 0)

	p, m := readLog(ns, pod.Name, "proxy"), readLog(ns, pod.Name, "main")
	m.first(t, "optional dependency is not a container of this pod; skipped", "dependency", "istio-proxy")
	mainExited := m.first(t, "child exited")
	// The proxy may quit before its answer is read; the answer is logged after the exit then.
	action := p.first(t, "stop action")
	p.first(t, "proxy: asked to quit")
	before(t, mainExited, action, "the stop action came after main exited")
	if !p.has("stop action done") {
		t.Error("the stop action's answer was not logged")
	}
	if p.has("proxy: got SIGTERM") || p.has("stopping the child") {
		t.Error("the proxy got a stop signal although its stop action answered")
	}
}
