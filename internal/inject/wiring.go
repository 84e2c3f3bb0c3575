// Package inject wires a pod template for koordinator: it adds the init container that installs
// the binary, the emptyDir it installs into, the downward-API podinfo volume, the mounts, a
// KOORDINATOR_SPEC per coordinated container, and runs each coordinated container's command
// behind /koordinator/koordinator.
//
// It is pure over the Kubernetes API types (no YAML, no I/O, no logging), so kubectl-koordinator
// and a future admission webhook share it. The wiring mirrors deploy/job-example.yaml exactly
// (names, mount paths, the init container's args), so a template wired by hand the README's way
// is recognised and nothing is wired twice: injecting an injected template changes nothing.
package inject

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// The names and paths of the wiring, as in deploy/job-example.yaml.
const (
	InstallerName = "koordinator"              // the init container that installs the binary
	VolumeName    = "koordinator"              // the emptyDir the binary is installed into
	MountPath     = "/koordinator"             // where every coordinated container mounts it
	BinaryPath    = "/koordinator/koordinator" // command[0] of every coordinated container
	PodinfoVolume = "podinfo"                  // the downward-API volume with the pod's name and namespace
	PodinfoPath   = "/etc/podinfo"             // where koordinator looks for it by default
	DefaultImage  = "ghcr.io/koordinator-dev/koordinator:latest"
)

// The annotations on a pod template (metadata.annotations) that say what to coordinate, so the
// choice lives in the manifest. Flags of kubectl-koordinator are the defaults for templates
// whose annotations do not say.
const (
	// AnnotationSidecars lists sidecar containers, comma-separated: every other regular container
	// starts once they are all Ready, and they are stopped once all the others have exited for good.
	AnnotationSidecars = "koordinator.dev/sidecars"
	// AnnotationMains lists the main containers instead (or as well): with only mains given,
	// every other regular container is a sidecar.
	AnnotationMains = "koordinator.dev/mains"
	// AnnotationStopDelay is the sidecars' stopDelay ("1s").
	AnnotationStopDelay = "koordinator.dev/stop-delay"
	// AnnotationStartTimeout is the mains' startTimeout ("5m").
	AnnotationStartTimeout = "koordinator.dev/start-timeout"
	// AnnotationInject set to "false" leaves the template alone whatever the flags say.
	AnnotationInject = "koordinator.dev/inject"
	// SpecAnnotationPrefix + container name carries that container's full KOORDINATOR_SPEC, used
	// as written instead of what the short form would give it. The key's shape follows
	// container.apparmor.security.beta.kubernetes.io/<container>: any container name fits.
	SpecAnnotationPrefix = "spec.koordinator.dev/"
)

// IsWired reports whether the container runs its command behind koordinator.
func IsWired(c *corev1.Container) bool {
	return len(c.Command) > 0 && c.Command[0] == BinaryPath
}

// ImageBinaryPath is where the koordinator image holds the binary.
const ImageBinaryPath = "/bin/koordinator"

// RunsFromImage reports whether the container runs the koordinator image's own binary (a
// stopper needs no shell and no copy): the koordinator image with command [/bin/koordinator].
func RunsFromImage(c *corev1.Container) bool {
	return len(c.Command) > 0 && c.Command[0] == ImageBinaryPath && strings.Contains(c.Image, "koordinator")
}

// IsNativeSidecar reports whether the init container is a native sidecar (restartPolicy Always).
func IsNativeSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// IsInstaller reports whether the init container installs koordinator's binary: the seed's
// shape (the koordinator image with args [MOUNTPATH], its entrypoint being --install) or an
// explicit --install.
func IsInstaller(c *corev1.Container) bool {
	argv := append(slices.Clone(c.Command), c.Args...)
	if slices.Contains(argv, "--install") {
		return true
	}
	return len(c.Command) == 0 && len(c.Args) == 1 && strings.Contains(c.Image, "koordinator")
}

// SpecEnv returns the container's last KOORDINATOR_SPEC entry (the one the kubelet uses), or nil.
func SpecEnv(c *corev1.Container) *corev1.EnvVar {
	var entry *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == spec.EnvVar {
			entry = &c.Env[i]
		}
	}
	return entry
}

// installer is the init container of deploy/job-example.yaml.
func installer(image string) corev1.Container {
	return corev1.Container{
		Name:         InstallerName,
		Image:        image,
		Args:         []string{MountPath},
		VolumeMounts: []corev1.VolumeMount{{Name: VolumeName, MountPath: MountPath}},
	}
}

func binaryVolume() corev1.Volume {
	return corev1.Volume{Name: VolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func podinfoVolume() corev1.Volume {
	item := func(path, field string) corev1.DownwardAPIVolumeFile {
		return corev1.DownwardAPIVolumeFile{Path: path, FieldRef: &corev1.ObjectFieldSelector{FieldPath: field}}
	}
	return corev1.Volume{Name: PodinfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{item("name", "metadata.name"), item("namespace", "metadata.namespace")},
	}}}
}
