// Package watchtest gives tests a list/watch of pods in client-go's fake clientset, the shape
// watch.Start takes. Test-only: never imported by the shipped binary.
package watchtest

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// Pods lists and watches the pods of namespace in c. The fake clientset cannot stream a
// watch-list; the wrapper says so, so the reflector lists and then watches.
func Pods(c *fake.Clientset, namespace string) cache.ListerWatcher {
	pods := c.CoreV1().Pods(namespace)
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (kwatch.Interface, error) {
			return pods.Watch(ctx, o)
		},
	}, c)
}
