// Package probe checks local start dependencies from inside the pod: a TCP port that accepts a
// connection, an HTTP endpoint that answers 2xx, a file that exists. It needs neither the API
// nor a Role: every container of a pod shares its network namespace, and a file dependency is
// on a volume the containers share.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// attemptTimeout bounds one check: a port that neither accepts nor refuses (a firewall dropping
// packets) or an endpoint that hangs must not hold the next attempt.
const attemptTimeout = time.Second

// client makes the HTTP checks: straight to the address (never through HTTP_PROXY, which is
// meant for traffic leaving the pod), a fresh connection each time (nothing left open between
// attempts), redirects followed as a browser would.
var client = &http.Client{
	Timeout:   attemptTimeout,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// Check makes one attempt at d: nil when it is ready, else why not.
func Check(ctx context.Context, d spec.LocalDep) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	switch d.Kind {
	case spec.TCP:
		var dialer net.Dialer
		c, err := dialer.DialContext(ctx, "tcp", d.Target)
		if err != nil {
			return err
		}
		return c.Close()
	case spec.HTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.Target, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: %s", d.Target, resp.Status)
		}
		return nil
	case spec.File:
		_, err := os.Stat(d.Target)
		return err
	}
	return errors.New("unknown kind of check " + d.Kind)
}

// Watch checks every dependency each interval until it has been ready once, and then sends it
// on the returned channel (each dependency once; the channel holds them all, so Watch never
// blocks on a slow reader). It stops when ctx is done.
func Watch(ctx context.Context, deps []spec.LocalDep, interval time.Duration) <-chan spec.LocalDep {
	ready := make(chan spec.LocalDep, len(deps))
	for _, d := range deps {
		go func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				if Check(ctx, d) == nil {
					ready <- d
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	return ready
}
