package watch

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	kwatch "k8s.io/apimachinery/pkg/watch"
	restwatch "k8s.io/client-go/rest/watch"
	"k8s.io/client-go/tools/cache"
)

// Rehearsal takes one pod state the way a watch event brings it — a protobuf frame holding a
// WatchEvent, decoded by client-go's stream watcher and the pod codec, put in a store like the
// reflector's — and judges it, without a server. Run after the executable's pages were released
// (package footprint), it maps back what the next reaction reads, so that the reaction does not
// fault it in while it is being timed by a user waiting for a child to start or stop.
type Rehearsal struct {
	frame   []byte
	info    runtime.SerializerInfo
	decoder runtime.Decoder // the pod codec, as the REST client's stream decoder has it
}

// NewRehearsal encodes pod as the API server sends it on a watch, and builds the decoders. None
// of that is part of a reaction: call it before the release, so its pages do not stay mapped.
func NewRehearsal(pod *corev1.Pod) (*Rehearsal, error) {
	ns := serializer.NewCodecFactory(podScheme()).WithoutConversion()
	info, ok := runtime.SerializerInfoForMediaType(ns.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok || info.StreamSerializer == nil {
		return nil, errors.New("no protobuf stream serializer")
	}
	raw, err := runtime.Encode(ns.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), pod)
	if err != nil {
		return nil, fmt.Errorf("encoding the pod: %w", err)
	}
	var frame bytes.Buffer
	ev := &metav1.WatchEvent{Type: string(kwatch.Modified), Object: runtime.RawExtension{Raw: raw}}
	enc := ns.EncoderForVersion(info.StreamSerializer.Serializer, corev1.SchemeGroupVersion)
	if err := enc.Encode(ev, info.StreamSerializer.Framer.NewFrameWriter(&frame)); err != nil {
		return nil, fmt.Errorf("encoding the watch event: %w", err)
	}
	return &Rehearsal{frame: frame.Bytes(), info: info, decoder: ns.DecoderToVersion(info.Serializer, corev1.SchemeGroupVersion)}, nil
}

// Run decodes the event as a watch does, stores the pod and judges it by startDeps and stopDeps.
func (r *Rehearsal) Run(startDeps, stopDeps []string) error {
	pod, err := r.decode()
	if err != nil {
		return err
	}
	store := cache.NewUndeltaStore(func([]any) {}, cache.MetaNamespaceKeyFunc)
	if err := store.Update(pod); err != nil {
		return err
	}
	StartState(pod, startDeps)
	StopState(pod, stopDeps)
	return nil
}

// decode reads the event through client-go's stream watcher, as a watch's response body is read.
func (r *Rehearsal) decode() (*corev1.Pod, error) {
	body := io.NopCloser(bytes.NewReader(r.frame))
	events := streaming.NewDecoder(r.info.StreamSerializer.Framer.NewFrameReader(body), r.info.StreamSerializer.Serializer)
	w := kwatch.NewStreamWatcher(restwatch.NewDecoder(events, r.decoder), discardErrors{})
	defer w.Stop()
	ev, ok := <-w.ResultChan()
	if !ok {
		return nil, errors.New("the rehearsed watch delivered nothing")
	}
	pod, ok := ev.Object.(*corev1.Pod)
	if !ok {
		return nil, fmt.Errorf("the rehearsed watch delivered a %T", ev.Object)
	}
	return pod, nil
}

// discardErrors is the stream watcher's error reporter for a rehearsal: a decoding error shows
// as a closed result channel.
type discardErrors struct{}

func (discardErrors) AsObject(err error) runtime.Object { return nil }
