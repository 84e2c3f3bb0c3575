package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// volumeDir is where a pod volume's content lives on the host; every
// container of the pod binds the same folder.
func (w *podWorker) volumeDir(name string) string {
	return filepath.Join(w.dir, "volumes", name)
}

// prepareVolumes makes every volume of the pod: emptyDir folders, and the
// files of downwardAPI, configMap, secret and projected volumes (the
// service-account token through the TokenRequest API, as the kubelet does).
func (w *podWorker) prepareVolumes() error {
	ctx, cancel := context.WithTimeout(w.n.ctx, 30*time.Second)
	defer cancel()
	for _, v := range w.pod.Spec.Volumes {
		if v.Image != nil {
			// Its content is the image's, bound read-only by each container
			// that mounts it (initSpec); its image is mapped when one starts.
			continue
		}
		dir := w.volumeDir(v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return err
		}
		var files map[string]fileContent
		var err error
		switch {
		case v.EmptyDir != nil:
			err = os.Chmod(dir, 0o777)
		case v.DownwardAPI != nil:
			files, err = w.downwardFiles(v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		case v.ConfigMap != nil:
			files, err = w.configMapFiles(ctx, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode)
		case v.Secret != nil:
			files, err = w.secretFiles(ctx, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode)
		case v.Projected != nil:
			files = map[string]fileContent{}
			for _, src := range v.Projected.Sources {
				var more map[string]fileContent
				switch {
				case src.ServiceAccountToken != nil:
					more, err = w.tokenFile(ctx, src.ServiceAccountToken)
				case src.ConfigMap != nil:
					more, err = w.configMapFiles(ctx, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, v.Projected.DefaultMode)
				case src.Secret != nil:
					more, err = w.secretFiles(ctx, src.Secret.Name, src.Secret.Items, src.Secret.Optional, v.Projected.DefaultMode)
				case src.DownwardAPI != nil:
					more, err = w.downwardFiles(src.DownwardAPI.Items, v.Projected.DefaultMode)
				default:
					err = fmt.Errorf("projected volume %q: unsupported source", v.Name)
				}
				if err != nil {
					break
				}
				for k, f := range more {
					files[k] = f
				}
			}
		default:
			err = fmt.Errorf("volume %q: type not supported by the local test node (emptyDir, downwardAPI, configMap, secret, projected)", v.Name)
		}
		if err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", v.Name, err)
		}
		for rel, f := range files {
			p := filepath.Join(dir, rel)
			if !strings.HasPrefix(p, dir+string(os.PathSeparator)) {
				return fmt.Errorf("volume %q: path %q escapes the volume", v.Name, rel)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(p, f.data, f.mode); err != nil {
				return err
			}
			if err := os.Chmod(p, f.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

type fileContent struct {
	data []byte
	mode os.FileMode
}

func fileMode(itemMode, defaultMode *int32) os.FileMode {
	switch {
	case itemMode != nil:
		return os.FileMode(*itemMode)
	case defaultMode != nil:
		return os.FileMode(*defaultMode)
	}
	return 0o644
}

// fieldValue resolves a downward-API field path against the pod.
func (w *podWorker) fieldValue(path string) (string, error) {
	pod := w.pod
	formatMap := func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "%s=%s", k, strconv.Quote(m[k]))
		}
		return b.String()
	}
	subscript := func(prefix string) (string, bool) {
		if !strings.HasPrefix(path, prefix+"['") || !strings.HasSuffix(path, "']") {
			return "", false
		}
		return path[len(prefix)+2 : len(path)-2], true
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.podIP":
		return nodeIP, nil
	case "status.hostIPs", "status.podIPs":
		return nodeIP, nil
	}
	if k, ok := subscript("metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := subscript("metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	return "", fmt.Errorf("fieldPath %q not supported by the local test node", path)
}

func (w *podWorker) downwardFiles(items []corev1.DownwardAPIVolumeFile, defaultMode *int32) (map[string]fileContent, error) {
	files := map[string]fileContent{}
	for _, it := range items {
		if it.FieldRef == nil {
			return nil, fmt.Errorf("downwardAPI item %q: only fieldRef is supported", it.Path)
		}
		v, err := w.fieldValue(it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		files[it.Path] = fileContent{data: []byte(v), mode: fileMode(it.Mode, defaultMode)}
	}
	return files, nil
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, what string) (map[string]fileContent, error) {
	files := map[string]fileContent{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = fileContent{data: v, mode: fileMode(nil, defaultMode)}
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = fileContent{data: v, mode: fileMode(it.Mode, defaultMode)}
	}
	return files, nil
}

func (w *podWorker) configMapFiles(ctx context.Context, name string, items []corev1.KeyToPath, optional *bool, defaultMode *int32) (map[string]fileContent, error) {
	cm, err := w.n.client.CoreV1().ConfigMaps(w.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %q: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, defaultMode, "configmap "+strconv.Quote(name))
}

func (w *podWorker) secretFiles(ctx context.Context, name string, items []corev1.KeyToPath, optional *bool, defaultMode *int32) (map[string]fileContent, error) {
	s, err := w.n.client.CoreV1().Secrets(w.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if optional != nil && *optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	return keyFiles(s.Data, items, defaultMode, "secret "+strconv.Quote(name))
}

// tokenFile mints a token for the pod's ServiceAccount, bound to the pod, as
// the kubelet does for the kube-api-access-* projected volume.
func (w *podWorker) tokenFile(ctx context.Context, src *corev1.ServiceAccountTokenProjection) (map[string]fileContent, error) {
	sa := w.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := testenv.TokenRequest{BoundPodName: w.pod.Name, BoundPodUID: string(w.pod.UID)}
	if src.Audience != "" {
		req.Audiences = []string{src.Audience}
	}
	if src.ExpirationSeconds != nil {
		req.Expiration = time.Duration(*src.ExpirationSeconds) * time.Second
	}
	token, err := w.n.cp.CreateToken(ctx, w.ns, sa, req)
	if err != nil {
		return nil, err
	}
	return map[string]fileContent{src.Path: {data: []byte(token), mode: 0o644}}, nil
}

// initSpec assembles what the init step needs to run an instance of c, and
// the container's environment (also used by exec probes).
func (w *podWorker) initSpec(c *ctrState) (*initSpec, []string, error) {
	img := c.image
	env, err := w.containerEnv(&c.spec, img)
	if err != nil {
		return nil, nil, err
	}
	lookup := func(k string) (string, bool) {
		for i := len(env) - 1; i >= 0; i-- {
			if name, v, _ := strings.Cut(env[i], "="); name == k {
				return v, true
			}
		}
		return "", false
	}
	args := argv(&c.spec, img)
	for i := range args {
		args[i] = expand(args[i], lookup)
	}
	s := &initSpec{
		SystemDirs: img.systemDirs,
		OverlayEtc: img.overlayEtc,
		Binds:      append([]bindMount(nil), img.binds...),
		Files: []fileSpec{
			{Target: "/etc/hostname", Content: w.name + "\n"},
			{Target: "/etc/hosts", Content: "# Kubernetes-managed hosts file (local test node).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + nodeIP + "\t" + w.name + "\n"},
		},
		Hostname:   w.name,
		Argv:       args,
		Env:        env,
		WorkingDir: c.spec.WorkingDir,
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		s.Files = append(s.Files, fileSpec{Target: "/etc/resolv.conf", Content: string(b)})
	}
	vols := map[string]corev1.Volume{}
	for _, v := range w.pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := append([]corev1.VolumeMount(nil), c.spec.VolumeMounts...)
	// Parents before children, whatever the manifest's order.
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].MountPath), "/") < strings.Count(filepath.Clean(mounts[j].MountPath), "/")
	})
	for _, m := range mounts {
		v, ok := vols[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("volumeMount %q: no such volume", m.Name)
		}
		base := w.volumeDir(m.Name)
		if v.Image != nil {
			if base, err = w.n.imageVolumeDir(v.Image.Reference); err != nil {
				return nil, nil, err
			}
		}
		src := base
		if sub := m.SubPath; sub != "" || m.SubPathExpr != "" {
			if m.SubPathExpr != "" {
				sub = expand(m.SubPathExpr, lookup)
			}
			src = filepath.Join(src, sub)
			if src != base && !strings.HasPrefix(src, base+string(os.PathSeparator)) {
				return nil, nil, fmt.Errorf("volumeMount %q: subPath escapes the volume", m.Name)
			}
			if _, err := os.Stat(src); err != nil {
				if v.Image != nil {
					// An image is never written to: a missing subPath fails
					// the container, as containerd and CRI-O do.
					return nil, nil, fmt.Errorf("volumeMount %q: subPath %q does not exist in image volume %q", m.Name, sub, v.Image.Reference)
				}
				if err := os.MkdirAll(src, 0o777); err != nil {
					return nil, nil, err
				}
			}
		}
		// The kubelet mounts these volume types read-only whatever the mount says.
		ro := m.ReadOnly || v.DownwardAPI != nil || v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.Image != nil
		s.Binds = append(s.Binds, bindMount{Source: src, Target: filepath.Clean(m.MountPath), ReadOnly: ro})
	}
	return s, env, nil
}

// containerEnv builds the environment as the kubelet and the runtime do: the
// image's variables, HOSTNAME, the kubernetes service's variables (pointing
// at the loopback apiserver), then envFrom and env with $(VAR) expansion.
func (w *podWorker) containerEnv(c *corev1.Container, img *imageRoot) ([]string, error) {
	var e envList
	for _, kv := range img.env {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	e.set("HOSTNAME", w.name)
	port := strconv.Itoa(w.n.cp.Port())
	var svc envList
	svc.set("KUBERNETES_SERVICE_HOST", nodeIP)
	svc.set("KUBERNETES_SERVICE_PORT", port)
	svc.set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	svc.set("KUBERNETES_PORT", "tcp://"+nodeIP+":"+port)
	svc.set("KUBERNETES_PORT_"+port+"_TCP", "tcp://"+nodeIP+":"+port)
	svc.set("KUBERNETES_PORT_"+port+"_TCP_PROTO", "tcp")
	svc.set("KUBERNETES_PORT_"+port+"_TCP_PORT", port)
	svc.set("KUBERNETES_PORT_"+port+"_TCP_ADDR", nodeIP)

	var own envList // the container's own variables win over service ones
	ctx, cancel := context.WithTimeout(w.n.ctx, 30*time.Second)
	defer cancel()
	for _, from := range c.EnvFrom {
		var data map[string]string
		switch {
		case from.ConfigMapRef != nil:
			cm, err := w.n.client.CoreV1().ConfigMaps(w.ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom configmap %q: %w", from.ConfigMapRef.Name, err)
			}
			data = cm.Data
		case from.SecretRef != nil:
			s, err := w.n.client.CoreV1().Secrets(w.ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if from.SecretRef.Optional != nil && *from.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			own.set(from.Prefix+k, data[k])
		}
	}
	lookup := func(k string) (string, bool) {
		if v, ok := own.lookup(k); ok {
			return v, true
		}
		return svc.lookup(k)
	}
	for _, ev := range c.Env {
		if ev.ValueFrom == nil {
			own.set(ev.Name, expand(ev.Value, lookup))
			continue
		}
		var v string
		var err error
		switch src := ev.ValueFrom; {
		case src.FieldRef != nil:
			v, err = w.fieldValue(src.FieldRef.FieldPath)
		case src.ConfigMapKeyRef != nil:
			var cm *corev1.ConfigMap
			cm, err = w.n.client.CoreV1().ConfigMaps(w.ns).Get(ctx, src.ConfigMapKeyRef.Name, metav1.GetOptions{})
			if err == nil {
				var ok bool
				if v, ok = cm.Data[src.ConfigMapKeyRef.Key]; !ok {
					err = fmt.Errorf("configmap %q has no key %q", src.ConfigMapKeyRef.Name, src.ConfigMapKeyRef.Key)
				}
			}
			if err != nil && src.ConfigMapKeyRef.Optional != nil && *src.ConfigMapKeyRef.Optional {
				continue
			}
		case src.SecretKeyRef != nil:
			var s *corev1.Secret
			s, err = w.n.client.CoreV1().Secrets(w.ns).Get(ctx, src.SecretKeyRef.Name, metav1.GetOptions{})
			if err == nil {
				b, ok := s.Data[src.SecretKeyRef.Key]
				if !ok {
					err = fmt.Errorf("secret %q has no key %q", src.SecretKeyRef.Name, src.SecretKeyRef.Key)
				}
				v = string(b)
			}
			if err != nil && src.SecretKeyRef.Optional != nil && *src.SecretKeyRef.Optional {
				continue
			}
		default:
			err = fmt.Errorf("env %q: valueFrom source not supported by the local test node", ev.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("env %q: %w", ev.Name, err)
		}
		own.set(ev.Name, v)
	}
	for _, k := range svc.keys {
		if _, ok := own.lookup(k); !ok {
			e.set(k, svc.vals[k])
		}
	}
	for _, k := range own.keys {
		e.set(k, own.vals[k])
	}
	return e.list(), nil
}
