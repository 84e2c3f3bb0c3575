// Package stopaction makes a spec's stopAction: the HTTP request that asks a process in the pod
// to stop itself (Istio's and Envoy's POST /quitquitquit, cloud-sql-proxy's --quitquitquit), made
// in place of a stop signal, or by a stopper for a container koordinator does not wrap.
package stopaction

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"time"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

const (
	// attemptTimeout bounds one request: a proxy that accepts and then hangs must not hold the stop.
	attemptTimeout = 2 * time.Second
	// retryFor is how long a refused connection is retried: the target may be restarting its
	// listener, or (for a stopper) still starting.
	retryFor = 2 * time.Second
)

// client goes straight to the loopback address (never through HTTP_PROXY) on a fresh connection.
var client = &http.Client{
	Timeout:   attemptTimeout,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// Do makes the request, retrying a connection that is refused or reset for up to retryFor, and
// reports whether it was answered with 2xx. The error says what happened: the request could not
// be made, or its status.
func Do(ctx context.Context, a spec.StopAction) error {
	wait := 50 * time.Millisecond
	giveUp := time.Now().Add(retryFor)
	for {
		err := once(ctx, a)
		if err == nil || !refused(err) || time.Now().Add(wait).After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

func once(ctx context.Context, a spec.StopAction) error {
	req, err := http.NewRequestWithContext(ctx, a.Method, a.URL, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", a, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: answered %s", a, resp.Status)
	}
	return nil
}

// refused reports a connection that was refused or reset: nothing answered yet.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
