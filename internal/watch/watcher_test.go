package watch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/koordinator-dev/koordinator/internal/watch/watchtest"
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
	_, err = retrying(context.Background(), report, func() (int, error) { calls++; return 0, apierrors.NewUnauthorized("who") })
	if !apierrors.IsUnauthorized(err) || calls != 1 || len(reported) != 1 {
		t.Fatalf("unauthorized: err %v after %d calls, %d reports; want it returned at once, reported once", err, calls, len(reported))
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	reported, calls = nil, 0
	_, err = retrying(ctx, report, func() (int, error) { calls++; return 0, &netError{syscall.ECONNREFUSED} })
	if err == nil || calls != 1 || len(reported) != 0 {
		t.Fatalf("cancelled: err %v after %d calls, %d reports; want one call, no report", err, calls, len(reported))
	}
}

// Right after a restart the API server answers 403 for a few milliseconds: that is retried on
// the fast schedule and never reported. A 403 that persists is reported once, and returned to
// client-go, within forbiddenGrace.
func TestRetryingAForbiddenThatClears(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
	var reported []error
	report := func(err error) { reported = append(reported, err) }

	calls := 0
	v, err := retrying(context.Background(), report, func() (int, error) {
		calls++
		if calls < 3 {
			return 0, forbidden
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 || len(reported) != 0 {
		t.Fatalf("a 403 that clears: got %d, %v after %d calls, reports %v; want 7 after 3 calls, nothing reported", v, err, calls, reported)
	}

	calls, reported = 0, nil
	began := time.Now()
	_, err = retrying(context.Background(), report, func() (int, error) { calls++; return 0, forbidden })
	took := time.Since(began)
	if !apierrors.IsForbidden(err) || len(reported) != 1 || calls < 3 {
		t.Fatalf("a 403 that persists: err %v after %d calls, reports %v; want it retried, then returned and reported once", err, calls, reported)
	}
	if took < forbiddenGrace || took > forbiddenGrace+2*time.Second {
		t.Errorf("a 403 that persists was returned after %v, want at forbiddenGrace (%v)", took, forbiddenGrace)
	}
}

func TestWatcherDeliversThePodAndNeverCallsADeletedPodNotFound(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "ns"}}
	c := fake.NewClientset(pod.DeepCopy())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := Start(ctx, watchtest.Pods(c, "ns"))
	next := func(what string) *corev1.Pod {
		t.Helper()
		select {
		case p := <-w.Pods():
			return p
		case <-w.NotFound():
			t.Fatalf("%s: NotFound closed for a pod that exists", what)
		case <-ctx.Done():
			t.Fatalf("%s: no pod delivered", what)
		}
		return nil
	}
	if p := next("first list"); p.Name != "job" {
		t.Fatalf("first list delivered %q, want job", p.Name)
	}

	pod.Status.Phase = corev1.PodRunning
	if _, err := c.CoreV1().Pods("ns").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := next("status update"); p.Status.Phase != corev1.PodRunning {
		t.Fatalf("update delivered phase %q, want Running", p.Status.Phase)
	}

	if err := c.CoreV1().Pods("ns").Delete(ctx, "job", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The deletion reaches the store in the reflector's goroutine; a later update proves it was
	// handled (and passed over) before the check below.
	pod.Name, pod.Status.Phase = "other", corev1.PodPending
	if _, err := c.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := next("after the deletion"); p.Name != "other" {
		t.Fatalf("after the deletion delivered %q, want the next pod", p.Name)
	}
	select {
	case <-w.NotFound():
		t.Fatal("NotFound closed after the pod had been seen")
	default:
	}
}

func TestWatcherSaysNotFoundWhenTheFirstListIsEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := Start(ctx, watchtest.Pods(fake.NewClientset(), "ns"))
	select {
	case <-w.NotFound():
	case p := <-w.Pods():
		t.Fatalf("delivered %q from an empty list", p.Name)
	case <-ctx.Done():
		t.Fatal("NotFound not closed after an empty first list")
	}
}

// A list the API refuses reaches Errors each time the reflector retries, and nothing of it is
// logged through the logger the watch was started with (the wrapper logs it its own way).
func TestWatchFailuresGoToErrorsNotToTheLog(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	rec := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, prefix+" "+args)
	}, funcr.Options{})
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
	lists := 0
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			lists++
			return nil, forbidden
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (kwatch.Interface, error) {
			return nil, forbidden
		},
	}, fake.NewClientset())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w := Start(klog.NewContext(ctx, rec), lw)
	for i := 0; i < 3; i++ {
		select {
		case err := <-w.Errors():
			if !apierrors.IsForbidden(err) {
				t.Fatalf("Errors delivered %v, want the 403", err)
			}
		case <-ctx.Done():
			t.Fatalf("only %d errors delivered", i)
		}
	}
	for {
		mu.Lock()
		n := lists
		mu.Unlock()
		if n >= 2 {
			break // the reflector has handled a failed list and retried
		}
		select {
		case <-ctx.Done():
			t.Fatal("the reflector did not retry the list")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, l := range logged {
		if strings.Contains(l, "error") || strings.Contains(l, "forbidden") {
			t.Errorf("logged: %s", l)
		}
	}
}

func TestErrorsToPassesOnAllButErrors(t *testing.T) {
	var reported []error
	var logged []string
	inner := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{}).GetSink()
	l := logr.New(errorsTo{LogSink: inner, report: func(err error) { reported = append(reported, err) }}).WithName("r").WithValues("k", 1)
	l.Info("hello")
	l.Error(errors.New("watch broke"), "Failed to watch")
	l.Error(nil, "Unexpected watch event object type")
	if len(reported) != 1 || reported[0].Error() != "watch broke" {
		t.Errorf("reported %v, want only the error with a value", reported)
	}
	if len(logged) != 2 || !strings.Contains(logged[0], "hello") || !strings.Contains(logged[1], "Unexpected watch event") {
		t.Errorf("logged %q, want the info line and the error without a value", logged)
	}
	logr.New(errorsTo{report: func(error) {}}).WithName("r").Info("no sink: nothing happens")
}
