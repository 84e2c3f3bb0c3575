package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeKind int

const (
	readinessProbe probeKind = iota
	startupProbe
)

// probeResult is a probe's verdict changing for one instance.
type probeResult struct {
	container string
	instance  string
	kind      probeKind
	ok        bool
}

// startProbes starts the startup probe of a fresh instance, or its readiness
// probe when it has no startup probe. The probes stop with the instance.
func (w *podWorker) startProbes(c *ctrState, inst *instance) {
	ctx, cancel := context.WithCancel(w.n.ctx)
	c.stopProbes = cancel
	go func() { // the instance's exit ends its probes
		select {
		case <-inst.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	switch {
	case c.kind == kindInit:
	case c.spec.StartupProbe != nil:
		go w.probeLoop(ctx, c.spec, inst, c.spec.StartupProbe, startupProbe)
	case c.spec.ReadinessProbe != nil:
		go w.probeLoop(ctx, c.spec, inst, c.spec.ReadinessProbe, readinessProbe)
	}
}

func (w *podWorker) handleProbe(r *probeResult) {
	c := w.byName[r.container]
	if c == nil || c.cur == nil || c.cur.id != r.instance || !c.running() {
		return
	}
	switch r.kind {
	case startupProbe:
		if !r.ok || c.started {
			return
		}
		c.started, c.everStarted = true, true
		w.logf("container %s: startup probe succeeded", c.spec.Name)
		if c.spec.ReadinessProbe == nil {
			c.ready = true
			return
		}
		ctx, cancel := context.WithCancel(w.n.ctx)
		prev, inst := c.stopProbes, c.cur
		c.stopProbes = func() { cancel(); prev() }
		go func() {
			select {
			case <-inst.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		go w.probeLoop(ctx, c.spec, inst, c.spec.ReadinessProbe, readinessProbe)
	case readinessProbe:
		if c.started && c.ready != r.ok {
			c.ready = r.ok
			w.logf("container %s: ready=%v", c.spec.Name, r.ok)
		}
	}
}

// probeLoop runs a probe with the kubelet's timings: the first probe at once
// (skipped until initialDelaySeconds have passed since the start), then every
// periodSeconds; the result flips after successThreshold successes or
// failureThreshold failures in a row. It reports changes only; readiness
// starts as failure. A startup probe stops after its first success.
func (w *podWorker) probeLoop(ctx context.Context, spec corev1.Container, inst *instance, p *corev1.Probe, kind probeKind) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	success, failure := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	if p.FailureThreshold == 0 {
		failure = 3
	}
	initialDelay := time.Duration(p.InitialDelaySeconds) * time.Second
	result, streak := false, int32(0)
	last := false
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if time.Since(inst.startedAt) >= initialDelay {
			ok := w.probeOnce(ctx, spec, inst, p, timeout)
			if ctx.Err() != nil {
				return
			}
			if ok == last {
				streak++
			} else {
				last, streak = ok, 1
			}
			switch {
			case ok && !result && streak >= success:
				result = true
				w.send(event{probe: &probeResult{container: spec.Name, instance: inst.id, kind: kind, ok: true}})
				if kind == startupProbe {
					return
				}
			case !ok && result && streak >= failure:
				result = false
				w.send(event{probe: &probeResult{container: spec.Name, instance: inst.id, kind: kind, ok: false}})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probeOnce runs one probe: exec inside the container's namespaces, httpGet
// or tcpSocket on the pod's address (127.0.0.1, the host's network).
func (w *podWorker) probeOnce(ctx context.Context, spec corev1.Container, inst *instance, p *corev1.Probe, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		return execProbe(ctx, inst, p.Exec.Command) == nil
	case p.HTTPGet != nil:
		port, err := resolvePort(p.HTTPGet.Port, spec)
		if err != nil {
			return false
		}
		host := p.HTTPGet.Host
		if host == "" {
			host = nodeIP
		}
		scheme := "http"
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), p.HTTPGet.Path), nil)
		if err != nil {
			return false
		}
		req.Header.Set("User-Agent", "kube-probe/1.37")
		for _, h := range p.HTTPGet.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := probeHTTPClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, spec)
		if err != nil {
			return false
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = nodeIP
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		conn.Close()
		return true
	case p.GRPC != nil:
		return false // not supported: never succeeds, so it is visible
	}
	return false
}

var probeHTTPClient = &http.Client{
	// The kubelet follows redirects on the same host only; not following
	// any treats a 3xx as success, which is what it reports then.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableKeepAlives: true},
}

func resolvePort(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no port named %q", p.StrVal)
}

// execProbe runs command inside the instance's user, mount and PID
// namespaces with the container's environment, via util-linux nsenter (a Go
// process cannot setns into a mount or user namespace: it is multithreaded).
// The probe process gets its own process group, killed on timeout.
func execProbe(ctx context.Context, inst *instance, command []string) error {
	if len(command) == 0 {
		return fmt.Errorf("empty exec probe")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("exec probes need nsenter (util-linux): %w", err)
	}
	args := append([]string{
		"--target", strconv.Itoa(inst.pid), "--user", "--mount", "--pid", "--uts", "--ipc",
		"--root", "--wd", "--preserve-credentials", "--",
	}, command...)
	cmd := exec.Command(nsenter, args...)
	cmd.Env = inst.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startLocked(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return ctx.Err()
	}
}
