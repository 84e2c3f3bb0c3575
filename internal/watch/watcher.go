package watch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
	"k8s.io/klog/v2"

	"github.com/koordinator-dev/koordinator/internal/latest"
)

// podScheme knows only core/v1 Pod and PodList (plus meta/v1). The typed core/v1 client would
// register every API group through client-go's global scheme and almost double the binary.
// Built when needed, not at package init: a wrapper without dependencies never needs it.
func podScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	s.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.Pod{}, &corev1.PodList{})
	metav1.AddToGroupVersion(s, corev1.SchemeGroupVersion)
	return s
}

// NewListWatch lists and watches the one pod namespace/name through a REST client built on cfg.
// It needs only `pods: list, watch` in that namespace.
func NewListWatch(cfg *rest.Config, namespace, name string) (cache.ListerWatcher, error) {
	c := rest.CopyConfig(cfg)
	c.APIPath = "/api"
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = serializer.NewCodecFactory(podScheme()).WithoutConversion()
	PreferProtobuf(c)
	if c.UserAgent == "" {
		c.UserAgent = "koordinator"
	}
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("building the API client: %w", err)
	}
	return cache.NewListWatchFromClient(client, "pods", namespace,
		fields.OneTermEqualSelector("metadata.name", name)), nil
}

// PreferProtobuf makes a client configuration ask for protobuf: a new process decodes its first
// pod in ~0.3 ms instead of the 4-10 ms JSON spends building its reflection caches, and each
// later pod in a third of the time. JSON stays acceptable for a server (or proxy) that cannot
// answer in protobuf.
func PreferProtobuf(c *rest.Config) {
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
}

// Watcher keeps one pod up to date through a client-go reflector (list, then watch; resync 0)
// and hands each new state on. It never gives up: list and watch failures are retried with
// client-go's backoff for the whole life of the process (a 410 leads to a relist), and only
// reported on Errors.
type Watcher struct {
	pods     chan *corev1.Pod
	errs     chan error
	notFound chan struct{}
}

// Start runs the watch until ctx is done.
//
// A client-go Reflector feeds an UndeltaStore, which hands the pod on from the reflector's own
// goroutine as each event is applied (the kubelet watches its pods the same way). A shared
// informer would pass every event through a DeltaFIFO, a processing loop and a listener
// goroutine first: three more hand-offs between goroutines for nothing, with one pod and one
// reader.
func Start(ctx context.Context, lw cache.ListerWatcher) *Watcher {
	w := &Watcher{
		pods:     make(chan *corev1.Pod, 1),
		errs:     make(chan error, 1),
		notFound: make(chan struct{}),
	}
	listed := false
	store := cache.NewUndeltaStore(func(pods []any) {
		// Only the reflector's goroutine calls this. The first call is the first complete list.
		first := !listed
		listed = true
		if len(pods) == 0 {
			// A deleted pod is only seen after every container has stopped (or on a forced
			// deletion, when the kubelet is about to kill us anyway): nothing left to decide.
			if first {
				close(w.notFound)
			}
			return
		}
		w.deliver(pods[0])
	}, cache.MetaNamespaceKeyFunc)
	report := func(err error) { latest.Offer(w.errs, err) }
	r := cache.NewReflectorWithOptions(&reporting{
		inner:                cache.ToListerWatcherWithContext(lw),
		report:               report,
		watchListUnsupported: watchlist.DoesClientNotSupportWatchListSemantics(lw),
	}, &corev1.Pod{}, store, cache.ReflectorOptions{Name: "pod"})
	// The reflector reports a watch that failed or broke through the logger in its context
	// (it has no error handler of its own): those reports go to Errors, where the wrapper
	// logs them its own way (rate-limited, with the RBAC hint on a 403), not once per retry.
	sink := errorsTo{LogSink: klog.FromContext(ctx).GetSink(), report: report}
	go r.RunWithContext(klog.NewContext(ctx, logr.New(sink)))
	return w
}

// errorsTo is a logr sink that hands every error reported with an error value to report and
// passes everything else on to the LogSink it wraps (which may be nil: log nothing).
type errorsTo struct {
	logr.LogSink
	report func(error)
}

// Init does nothing: the wrapped sink was initialised when its own logger was made (and may
// be shared with other goroutines).
func (s errorsTo) Init(logr.RuntimeInfo) {}

func (s errorsTo) Enabled(level int) bool { return s.LogSink != nil && s.LogSink.Enabled(level) }

func (s errorsTo) Info(level int, msg string, kv ...any) {
	if s.LogSink != nil {
		s.LogSink.Info(level, msg, kv...)
	}
}

func (s errorsTo) Error(err error, msg string, kv ...any) {
	switch {
	case err != nil:
		s.report(err)
	case s.LogSink != nil:
		s.LogSink.Error(err, msg, kv...)
	}
}

func (s errorsTo) WithValues(kv ...any) logr.LogSink {
	if s.LogSink != nil {
		s.LogSink = s.LogSink.WithValues(kv...)
	}
	return s
}

func (s errorsTo) WithName(name string) logr.LogSink {
	if s.LogSink != nil {
		s.LogSink = s.LogSink.WithName(name)
	}
	return s
}

// reporting passes on every list and watch failure, including those client-go retries without
// telling anyone (connection refused, 429), so that an API outage is logged. It also retries
// transient failures itself on a short backoff (0.2 s doubling to 2 s): client-go's own grows to
// 30 s, which would leave a Job waiting up to half a minute after a brief API outage.
type reporting struct {
	inner                cache.ListerWatcherWithContext
	report               func(error)
	watchListUnsupported bool
}

// retryBackoff paces reporting's own retries of transient failures.
var retryBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 2 * time.Second}

func (r *reporting) List(o metav1.ListOptions) (runtime.Object, error) {
	return r.ListWithContext(context.Background(), o)
}

func (r *reporting) Watch(o metav1.ListOptions) (kwatch.Interface, error) {
	return r.WatchWithContext(context.Background(), o)
}

func (r *reporting) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return retrying(ctx, r.report, func() (runtime.Object, error) { return r.inner.ListWithContext(ctx, o) })
}

func (r *reporting) WatchWithContext(ctx context.Context, o metav1.ListOptions) (kwatch.Interface, error) {
	return retrying(ctx, r.report, func() (kwatch.Interface, error) { return r.inner.WatchWithContext(ctx, o) })
}

// forbiddenGrace is how long a 403 is retried like a transient failure, unreported, before it
// counts: for 10-30 ms after a restart the API server answers 403 while its authorizer's caches
// fill, which is no missing Role. A 403 that outlasts it is reported (the wrapper's one line on
// RBAC) and left to client-go's backoff.
const forbiddenGrace = 2 * time.Second

// retrying calls call until it succeeds, fails for a reason retrying cannot fix (returned to
// client-go, which backs off on its own), or ctx ends. Every failure is reported, except a 403
// while it is younger than forbiddenGrace.
func retrying[T any](ctx context.Context, report func(error), call func() (T, error)) (T, error) {
	backoff := retryBackoff
	var forbiddenSince time.Time
	for {
		v, err := call()
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		wait := backoff.Step()
		switch {
		case apierrors.IsForbidden(err):
			if forbiddenSince.IsZero() {
				forbiddenSince = time.Now()
			}
			left := forbiddenGrace - time.Since(forbiddenSince)
			if left <= 0 {
				report(err)
				return v, err
			}
			wait = min(wait, left)
		case transient(err):
			forbiddenSince = time.Time{}
			report(err)
		default:
			report(err)
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
	}
}

// transient tells failures that go away by themselves (no connection, 429, 5xx) from answers
// that need someone to act (403, 401, 404, 410 and other API errors).
func transient(err error) bool {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code := status.Status().Code
		return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError
	}
	return true
}

// IsWatchListSemanticsUnSupported keeps what the wrapped ListerWatcher says about streaming
// lists (client-go's fake clientset cannot stream them).
func (r *reporting) IsWatchListSemanticsUnSupported() bool { return r.watchListUnsupported }

// Pods delivers the latest state of the pod; a state not yet taken is replaced by a newer one.
// The objects are the watch's cache: never modify them.
func (w *Watcher) Pods() <-chan *corev1.Pod { return w.pods }

// Errors delivers list and watch failures (the latest when the reader lags).
func (w *Watcher) Errors() <-chan error { return w.errs }

// NotFound is closed when the first complete list held no pod of that name: the name or the
// namespace is wrong. It is never closed once the pod has been seen.
func (w *Watcher) NotFound() <-chan struct{} { return w.notFound }

func (w *Watcher) deliver(obj any) {
	if pod, ok := obj.(*corev1.Pod); ok {
		latest.Offer(w.pods, pod)
	}
}
