package inject

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// Options are what kubectl-koordinator's flags say. They apply to a template whose annotations
// do not say otherwise: AnnotationSidecars or AnnotationMains replace both role lists, each
// duration annotation replaces its flag.
type Options struct {
	Sidecars     []string // --sidecar
	Mains        []string // --main
	StopDelay    string   // --stop-delay, a spec duration ("1s"); "" leaves it out
	StartTimeout string   // --start-timeout; "" leaves it out
	Image        string   // the installer's image; DefaultImage when ""
	// ServiceAccount, when set, becomes the serviceAccountName of a wired pod that names none
	// (koordinator watches its pod through the API: the default ServiceAccount may not).
	ServiceAccount string
	// ImageConfigs tells what the image of a container without command runs; nil knows nothing.
	ImageConfigs ImageConfigs
}

// ImageConfig is what an image runs when the manifest gives no command: its ENTRYPOINT and CMD.
type ImageConfig struct {
	Entrypoint []string
	Cmd        []string
}

// ImageConfigs finds the image config of a container that has no command; ok=false when it is
// not known (then nothing is guessed: Template fails with a *NeedImageConfigError).
type ImageConfigs func(c *corev1.Container) (cfg ImageConfig, ok bool)

// NeedImageConfigError lists the coordinated containers that have no command and whose image's
// ENTRYPOINT/CMD are not known, so their command cannot be written.
type NeedImageConfigError struct{ Containers []string }

func (e *NeedImageConfigError) Error() string {
	return fmt.Sprintf("no command and no known image ENTRYPOINT/CMD for container(s) %s", strings.Join(e.Containers, ", "))
}

// Result is the wired template and what the user should be told about it.
type Result struct {
	Template corev1.PodTemplateSpec
	Changed  bool     // false: Template equals the input
	Notes    []string // one line each, for stderr
	Skipped  string   // why nothing was asked of this template, when nothing was
}

// Template wires one pod template. The input is not modified. A template with nothing to
// coordinate (no roles from flags or annotations, no spec annotation) is returned unchanged,
// wired or not; so is one annotated koordinator.dev/inject: "false".
func Template(in corev1.PodTemplateSpec, opts Options) (Result, error) {
	tmpl := *in.DeepCopy()
	res := Result{Template: in}
	if v, ok := tmpl.Annotations[AnnotationInject]; ok {
		switch v {
		case "false":
			res.Skipped = "annotation " + AnnotationInject + " is \"false\""
			return res, nil
		case "true":
		default:
			return res, fmt.Errorf("annotation %s is %q; write \"true\" or \"false\"", AnnotationInject, v)
		}
	}
	p, err := makePlan(&tmpl.Spec, tmpl.Annotations, opts)
	if err != nil {
		return res, err
	}
	res.Notes = p.notes
	if len(p.wants) == 0 {
		if len(p.notes) == 0 {
			res.Skipped = "nothing says what to coordinate (--sidecar, --main, annotation " + AnnotationSidecars + " or " + SpecAnnotationPrefix + "<container>)"
		}
		return res, nil
	}

	var missing []string
	for _, c := range Containers(&tmpl.Spec) {
		w, ok := p.wants[c.Name]
		if !ok {
			continue
		}
		if err := wireCommand(c, opts.ImageConfigs); errors.Is(err, errNeedImageConfig) {
			missing = append(missing, c.Name)
		} else if err != nil {
			return res, fmt.Errorf("container %s: %w", c.Name, err)
		}
		if err := setSpec(c, w); err != nil {
			return res, fmt.Errorf("container %s: %w", c.Name, err)
		}
		for _, m := range []corev1.VolumeMount{{Name: VolumeName, MountPath: MountPath}, {Name: PodinfoVolume, MountPath: PodinfoPath}} {
			if err := ensureMount(c, m); err != nil {
				return res, fmt.Errorf("container %s: %w", c.Name, err)
			}
		}
	}
	if missing != nil {
		return res, &NeedImageConfigError{Containers: missing}
	}
	image := opts.Image
	if image == "" {
		image = DefaultImage
	}
	if err := ensureInstaller(&tmpl.Spec, image); err != nil {
		return res, err
	}
	for _, v := range []corev1.Volume{binaryVolume(), podinfoVolume()} {
		if err := ensureVolume(&tmpl.Spec, v); err != nil {
			return res, err
		}
	}
	if err := checkDeps(&tmpl); err != nil {
		return res, err
	}
	if sa := opts.ServiceAccount; sa != "" {
		switch ps := &tmpl.Spec; {
		case ps.ServiceAccountName == "" && ps.DeprecatedServiceAccount == "":
			ps.ServiceAccountName = sa
		case ps.ServiceAccountName != sa && ps.DeprecatedServiceAccount != sa:
			name := ps.ServiceAccountName
			if name == "" {
				name = ps.DeprecatedServiceAccount
			}
			res.Notes = append(res.Notes, fmt.Sprintf("runs as ServiceAccount %s, not %s: that one needs a Role with pods: list, watch", name, sa))
		}
	}
	res.Template = tmpl
	res.Changed = !reflect.DeepEqual(in, tmpl)
	return res, nil
}

// Containers lists pointers to the init and regular containers, in that order.
func Containers(ps *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range ps.InitContainers {
		cs = append(cs, &ps.InitContainers[i])
	}
	for i := range ps.Containers {
		cs = append(cs, &ps.Containers[i])
	}
	return cs
}

var errNeedImageConfig = errors.New("image config needed")

// wireCommand runs the container's command behind koordinator, by the Kubernetes rules: a
// manifest command replaces the image's ENTRYPOINT and CMD, args alone replace only CMD.
func wireCommand(c *corev1.Container, images ImageConfigs) error {
	if IsWired(c) {
		return nil
	}
	if len(c.Command) > 0 {
		c.Command = append([]string{BinaryPath}, c.Command...)
		return nil
	}
	if images == nil {
		return errNeedImageConfig
	}
	cfg, ok := images(c)
	if !ok {
		return errNeedImageConfig
	}
	argv := slices.Clone(cfg.Entrypoint)
	args := c.Args
	if len(args) == 0 {
		args = cfg.Cmd
	}
	if len(argv) == 0 && len(args) == 0 {
		return fmt.Errorf("image %s has neither ENTRYPOINT nor CMD and the container sets no command: there is nothing to run", c.Image)
	}
	first := append(slices.Clone(argv), args...)[0]
	if strings.HasPrefix(first, "-") {
		// koordinator would take it for one of its own flags.
		return fmt.Errorf("the command would start with %q; a command cannot start with '-'", first)
	}
	c.Command = append([]string{BinaryPath}, argv...)
	if len(c.Args) == 0 && len(cfg.Cmd) > 0 {
		c.Args = slices.Clone(cfg.Cmd)
	}
	return nil
}

func ensureMount(c *corev1.Container, want corev1.VolumeMount) error {
	for _, m := range c.VolumeMounts {
		if m.MountPath == want.MountPath {
			if m.Name != want.Name {
				return fmt.Errorf("it mounts volume %q at %s, where koordinator needs its volume %q; move that mount", m.Name, m.MountPath, want.Name)
			}
			return nil
		}
	}
	c.VolumeMounts = append(c.VolumeMounts, want)
	return nil
}

func ensureVolume(ps *corev1.PodSpec, want corev1.Volume) error {
	for _, v := range ps.Volumes {
		if v.Name != want.Name {
			continue
		}
		if want.EmptyDir != nil && v.EmptyDir == nil {
			return fmt.Errorf("volume %q exists and is not an emptyDir; koordinator installs its binary into an emptyDir of that name: rename that volume", v.Name)
		}
		if want.DownwardAPI != nil && v.DownwardAPI == nil {
			return fmt.Errorf("volume %q exists and is not a downwardAPI volume; koordinator reads the pod's name and namespace from it: rename that volume", v.Name)
		}
		return nil
	}
	ps.Volumes = append(ps.Volumes, want)
	return nil
}

// ensureInstaller adds the init container that installs the binary, first, unless one is there.
func ensureInstaller(ps *corev1.PodSpec, image string) error {
	for i := range ps.InitContainers {
		if IsInstaller(&ps.InitContainers[i]) {
			return nil
		}
	}
	for _, c := range Containers(ps) {
		if c.Name == InstallerName {
			return fmt.Errorf("container %q exists and does not install koordinator; the init container that does needs that name: rename it", c.Name)
		}
	}
	ps.InitContainers = slices.Insert(ps.InitContainers, 0, installer(image))
	return nil
}

// checkDeps runs the wrapper's own checks over the wired pod, so that inject never writes a
// pod the wrapper would refuse: dependencies that name no container, self-dependencies, start
// cycles, and a stop dependency on a native sidecar (one could never hold).
func checkDeps(tmpl *corev1.PodTemplateSpec) error {
	pod := TemplatePod(tmpl.Spec)
	for _, c := range Containers(&tmpl.Spec) {
		e := SpecEnv(c)
		if e == nil || e.ValueFrom != nil {
			continue
		}
		s, err := spec.Parse([]byte(e.Value))
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		if err := watch.ValidateDeps(pod, c.Name, s.StartDeps, s.StopDeps); err != nil {
			return fmt.Errorf("container %s: %s", c.Name, DepMessage(err))
		}
		if d, ok := NativeStopDep(&tmpl.Spec, s.StopDeps); ok {
			return fmt.Errorf("container %s: stop dependency %q is a native sidecar (an init container with restartPolicy: Always), which never exits for good while the pod runs: remove it from stopDeps", c.Name, d)
		}
	}
	return nil
}

// A template has no pod name yet: watch.ValidateDeps gets these, and DepMessage takes them out.
const (
	templatePod       = "TEMPLATE"
	templateNamespace = "NAMESPACE"
)

// TemplatePod is the pod a template would make, for the wrapper's pod checks; DepMessage turns
// the errors of those checks into messages about the template.
func TemplatePod(ps corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: templatePod, Namespace: templateNamespace}, Spec: ps}
}

// DepMessage is a watch.ValidateDeps error about a TemplatePod, saying "the pod" for it.
func DepMessage(err error) string {
	return strings.ReplaceAll(err.Error(), "pod "+templateNamespace+"/"+templatePod, "the pod")
}

// NativeStopDep returns the first stop dependency that is a native sidecar.
func NativeStopDep(ps *corev1.PodSpec, stopDeps []string) (string, bool) {
	for i := range ps.InitContainers {
		c := &ps.InitContainers[i]
		if IsNativeSidecar(c) && slices.Contains(stopDeps, c.Name) {
			return c.Name, true
		}
	}
	return "", false
}
