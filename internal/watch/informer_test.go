package watch

import (
	"context"
	"errors"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestTransient(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &netError{syscall.ECONNREFUSED}, true},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), true},
		{"service unavailable", apierrors.NewServiceUnavailable("starting"), true},
		{"internal error", apierrors.NewInternalError(errors.New("boom")), true},
		{"forbidden", apierrors.NewForbidden(pods, "", errors.New("no")), false},
		{"unauthorized", apierrors.NewUnauthorized("who"), false},
		{"gone", apierrors.NewResourceExpired("too old"), false},
		{"not found", apierrors.NewNotFound(pods, "x"), false},
	}
	for _, c := range cases {
		if got := transient(c.err); got != c.want {
			t.Errorf("%s: transient = %v, want %v", c.name, got, c.want)
		}
	}
}

type netError struct{ errno syscall.Errno }

func (e *netError) Error() string { return "dial tcp 127.0.0.1:6443: " + e.errno.Error() }
func (e *netError) Unwrap() error { return e.errno }

func TestRetryingRetriesOnlyTransientFailures(t *testing.T) {
	var reported []error
	report := func(err error) { reported = append(reported, err) }

	calls := 0
	v, err := retrying(context.Background(), report, func() (int, error) {
		calls++
		if calls < 3 {
			return 0, &netError{syscall.ECONNREFUSED}
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 || len(reported) != 2 {
		t.Fatalf("transient: got %d, %v after %d calls, %d reports; want 7 after 3 calls, 2 reports", v, err, calls, len(reported))
	}

	reported, calls = nil, 0
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
	_, err = retrying(context.Background(), report, func() (int, error) { calls++; return 0, forbidden })
	if !apierrors.IsForbidden(err) || calls != 1 || len(reported) != 1 {
		t.Fatalf("forbidden: err %v after %d calls, %d reports; want it returned at once, reported once", err, calls, len(reported))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	reported, calls = nil, 0
	_, err = retrying(ctx, report, func() (int, error) { calls++; return 0, &netError{syscall.ECONNREFUSED} })
	if err == nil || calls != 1 || len(reported) != 0 {
		t.Fatalf("cancelled: err %v after %d calls, %d reports; want one call, no report", err, calls, len(reported))
	}
}
