// Package lint finds the mistakes that would make a koordinator-wired pod misbehave, from the
// pod template alone (no cluster): each finding names the container, what is wrong, and the fix.
// It is pure over the Kubernetes API types and reuses the wrapper's own checks (internal/spec,
// watch.ValidateDeps), so that it reports what the wrapper would refuse, in the wrapper's words.
package lint

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/inject"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// The rules, as reported in Finding.Rule.
const (
	RuleSpec               = "spec"                    // KOORDINATOR_SPEC does not parse
	RuleTypo               = "typo"                    // KOOORDINATOR_SPEC (three O's)
	RuleDeps               = "deps"                    // a dependency names no container, this container, or closes a start cycle
	RuleStopDepNative      = "stop-dep-native-sidecar" // a stop dependency that never holds
	RuleNoAPIStopDep       = "no-api-stop-dep"         // without the API, a stop dependency koordinator does not wrap
	RuleStartOrder         = "start-order"             // an init container waits for a container the kubelet starts after it
	RuleNotWrapped         = "not-wrapped"             // a spec, but the command does not run behind koordinator
	RuleNoMount            = "no-mount"                // runs koordinator without mounting its volume
	RuleNoInstaller        = "no-installer"            // no init container installs the binary into that volume
	RuleStateDir           = "state-dir"               // runs from a read-only image volume without a writable KOORDINATOR_STATE_DIR
	RuleStopDelay          = "stop-delay"              // stopDelay longer than terminationGracePeriodSeconds
	RuleRestartAlways      = "restart-always"          // stop dependencies in a pod whose restartPolicy is Always
	RuleNoServiceAccount   = "no-service-account"      // the spec needs the API, the pod has no ServiceAccount of its own
	RuleRBAC               = "rbac"                    // (lint --cluster) the pod's ServiceAccount may not list or watch pods
	defaultGracePeriodSecs = 30
)

// Finding is one mistake.
type Finding struct {
	Container string `json:"container,omitempty"` // "" for the pod as a whole
	Rule      string `json:"rule"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
}

// Template lints one pod template. Findings come in container order, then the pod's own.
func Template(tmpl corev1.PodTemplateSpec) []Finding {
	ps := &tmpl.Spec
	pod := inject.TemplatePod(*ps)
	var out []Finding
	add := func(c, rule, fix, format string, args ...any) {
		out = append(out, Finding{Container: c, Rule: rule, Message: fmt.Sprintf(format, args...), Fix: fix})
	}
	needsAPI := false
	stopDeps := false
	var longestDelay time.Duration
	delayed := ""
	var uninstalled []string              // volumes koordinator runs from that no init container fills
	cycle := false                        // a start cycle is reported once, not by each of its containers
	stateVolumes := map[string][]string{} // state volume → the containers run from an image volume that use it
	for _, c := range inject.Containers(ps) {
		if inject.IsInstaller(c) && !inject.IsWired(c) {
			continue
		}
		// Runs the binary an image volume of the koordinator image shows: nothing to install.
		fromVolume := runsFromImageVolume(ps, c)
		for _, e := range c.Env {
			if e.Name == spec.TypoEnvVar {
				add(c.Name, RuleTypo, "rename it to "+spec.EnvVar,
					"sets %s (three O's), which koordinator does not read", spec.TypoEnvVar)
			}
		}
		entry := inject.SpecEnv(c)
		if entry == nil && !inject.IsWired(c) && !fromVolume {
			continue
		}
		if inject.RunsFromImage(c) {
			// The koordinator image's own binary (a stopper, say): nothing to install.
		} else if fromVolume {
			if v, ok := stateVolume(ps, c, add); ok {
				stateVolumes[v] = append(stateVolumes[v], c.Name)
			}
		} else if !inject.IsWired(c) {
			add(c.Name, RuleNotWrapped, fmt.Sprintf("run it as command: [%s, ...] (kubectl koordinator inject does it)", inject.BinaryPath),
				"has %s but its command %s does not run behind koordinator, so nothing reads the spec", spec.EnvVar, describeCommand(c))
		} else if v := binaryVolume(c, add); v != "" && isImageVolume(ps, v) {
			at := imageVolumeBinaries(ps, c)
			add(c.Name, RuleNoMount, fmt.Sprintf("mount volume %s at %s with subPath: bin (deploy/job-image-volume-example.yaml), or run %s", v, inject.MountPath, strings.Join(at, " or ")),
				"runs %s, but image volume %s shows the koordinator image's /bin/koordinator at %s", c.Command[0], v, strings.Join(at, " and "))
		} else if v != "" {
			at := installedAt(ps, v)
			switch {
			case at < 0:
				if !slices.Contains(uninstalled, v) {
					uninstalled = append(uninstalled, v)
				}
			case isInit(ps, c) && initIndex(ps, c.Name) < at:
				add(c.Name, RuleNoInstaller, fmt.Sprintf("move init container %s before it", ps.InitContainers[at].Name),
					"is an init container that runs koordinator before init container %s installs it", ps.InitContainers[at].Name)
			}
		}
		if entry == nil || entry.ValueFrom != nil {
			continue // no spec (runs like a plain PID 1), or one that only the cluster can show
		}
		s, err := spec.Parse([]byte(entry.Value))
		if err != nil {
			add(c.Name, RuleSpec, "correct "+spec.EnvVar+" as the message says", "%v", err)
			continue
		}
		needsAPI = needsAPI || s.NeedsAPI()
		native, stopsOnNative := inject.NativeStopDep(ps, s.StopDeps)
		if err := watch.ValidateDeps(pod, c.Name, s.StartDeps, s.StopDeps); err != nil {
			msg := inject.DepMessage(err)
			isCycle := strings.Contains(msg, "form a cycle")
			switch {
			case stopsOnNative && strings.Contains(msg, "native sidecar"):
				// The wrapper's checks know this one too: reported below, once, as its own rule.
			case isCycle && cycle:
			default:
				cycle = cycle || isCycle
				add(c.Name, RuleDeps, "name other containers of this pod, without start cycles", "%s", msg)
			}
		}
		if d, ok := startsLater(ps, c, s.StartDeps); ok {
			add(c.Name, RuleStartOrder, fmt.Sprintf("remove %q from startDeps: the kubelet runs init containers one by one, to completion, before what follows them", d),
				"is an init container waiting for %q, which the kubelet starts only after this one has completed", d)
		}
		if s.NoAPI {
			for _, d := range s.StopDeps {
				if dep := byName(ps, d); dep != nil && !runsKoordinator(ps, dep) {
					add(c.Name, RuleNoAPIStopDep, fmt.Sprintf("run %s behind koordinator too, or remove \"api\": false", d),
						"stop dependency %q does not run behind koordinator, and without the API (\"api\": false) only its state file could tell its exit: this container would wait for it forever", d)
				}
			}
		}
		if stopsOnNative {
			add(c.Name, RuleStopDepNative, fmt.Sprintf("remove %q from stopDeps: the kubelet stops native sidecars after the other containers", native),
				"stop dependency %q is a native sidecar (an init container with restartPolicy: Always), which never exits for good while the pod runs", native)
		}
		if len(s.StopDeps) > 0 {
			stopDeps = true
			if restartsAlways(ps) {
				add(c.Name, RuleRestartAlways, "use restartPolicy Never or OnFailure (a Job), or remove stopDeps",
					"has stopDeps but the pod's restartPolicy is Always: once stopped it would be restarted")
			}
		}
		if s.StopDelay > longestDelay {
			longestDelay, delayed = s.StopDelay, c.Name
		}
	}
	if len(stateVolumes) > 1 {
		var split []string
		for v, cs := range stateVolumes {
			split = append(split, fmt.Sprintf("%s (%s)", v, strings.Join(cs, ", ")))
		}
		slices.Sort(split)
		add("", RuleStateDir, "point every container's KOORDINATOR_STATE_DIR at one emptyDir",
			"the containers keep their state files in different volumes, %s, so they do not see each other's exits", strings.Join(split, " and "))
	}
	for _, v := range uninstalled {
		add("", RuleNoInstaller, fmt.Sprintf("add the init container of deploy/job-example.yaml (image %s, args [%s]) mounting volume %s", inject.DefaultImage, inject.MountPath, v),
			"koordinator runs from volume %s, but no init container installs it there", v)
	}
	grace := int64(defaultGracePeriodSecs)
	if ps.TerminationGracePeriodSeconds != nil {
		grace = *ps.TerminationGracePeriodSeconds
	}
	if stopDeps && longestDelay > time.Duration(grace)*time.Second {
		add(delayed, RuleStopDelay, "shorten stopDelay or raise terminationGracePeriodSeconds",
			"stopDelay %v is longer than the pod's terminationGracePeriodSeconds (%ds): on deletion the kubelet kills it first", longestDelay, grace)
	}
	if needsAPI {
		sa := ps.ServiceAccountName
		if sa == "" {
			sa = ps.DeprecatedServiceAccount
		}
		switch {
		case ps.AutomountServiceAccountToken != nil && !*ps.AutomountServiceAccountToken:
			add("", RuleNoServiceAccount, "set automountServiceAccountToken: true (or remove it)",
				"automountServiceAccountToken is false, but koordinator watches its pod through the API")
		case sa == "":
			add("", RuleNoServiceAccount, "set serviceAccountName to one allowed to list and watch pods (deploy/rbac.yaml: koordinator; inject --rbac does both)",
				"runs as the namespace's default ServiceAccount, but koordinator watches its pod through the API (pods: list, watch)")
		}
	}
	return out
}

// binaryVolume returns the volume a container running koordinator mounts where the binary is,
// or "" (and a finding) when it mounts none there.
func binaryVolume(c *corev1.Container, add func(c, rule, fix, format string, args ...any)) string {
	dir := path.Dir(c.Command[0])
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir {
			return m.Name
		}
	}
	add(c.Name, RuleNoMount, fmt.Sprintf("add volumeMounts: [{name: %s, mountPath: %s}]", inject.VolumeName, dir),
		"runs %s but mounts no volume at %s, so the binary is not there", c.Command[0], dir)
	return ""
}

// isImageVolume reports whether the pod's volume is an image volume of the koordinator image.
func isImageVolume(ps *corev1.PodSpec, name string) bool {
	for _, v := range ps.Volumes {
		if v.Name == name {
			return v.Image != nil && strings.Contains(v.Image.Reference, "koordinator")
		}
	}
	return false
}

// imageVolumeBinaries returns where the container sees the koordinator image's /bin/koordinator
// through its mounts of image volumes of that image: <mountPath>/bin/koordinator without
// subPath, <mountPath>/koordinator with subPath bin.
// byName is the pod's container called name, or nil.
func byName(ps *corev1.PodSpec, name string) *corev1.Container {
	for _, c := range inject.Containers(ps) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// runsKoordinator reports whether c runs the koordinator binary: copied by the init container,
// the koordinator image's own, or from an image volume of that image.
func runsKoordinator(ps *corev1.PodSpec, c *corev1.Container) bool {
	return inject.IsWired(c) || inject.RunsFromImage(c) || runsFromImageVolume(ps, c)
}

// runsFromImageVolume reports whether c runs the binary an image volume of the koordinator
// image shows it.
func runsFromImageVolume(ps *corev1.PodSpec, c *corev1.Container) bool {
	return len(c.Command) > 0 && slices.Contains(imageVolumeBinaries(ps, c), path.Clean(c.Command[0]))
}

func imageVolumeBinaries(ps *corev1.PodSpec, c *corev1.Container) []string {
	const inImage = "bin/koordinator" // inject.ImageBinaryPath, relative to the image's root
	var out []string
	for _, m := range c.VolumeMounts {
		if !isImageVolume(ps, m.Name) || m.SubPathExpr != "" {
			continue
		}
		switch sub := strings.Trim(path.Clean("/"+m.SubPath), "/"); {
		case sub == "":
			out = append(out, path.Join(m.MountPath, inImage))
		case sub == inImage:
			out = append(out, path.Clean(m.MountPath))
		case strings.HasPrefix(inImage, sub+"/"):
			out = append(out, path.Join(m.MountPath, strings.TrimPrefix(inImage, sub+"/")))
		}
	}
	return out
}

// stateVolume returns the volume a container that runs koordinator from a (read-only) image
// volume keeps the pod-local channel in: the one mounted, writable, at KOORDINATOR_STATE_DIR.
// Otherwise it adds a finding; ok=false also when the value comes from valueFrom.
func stateVolume(ps *corev1.PodSpec, c *corev1.Container, add func(c, rule, fix, format string, args ...any)) (string, bool) {
	const fix = "set KOORDINATOR_STATE_DIR to the mountPath of an emptyDir that every coordinated container mounts (deploy/job-image-volume-example.yaml)"
	var env *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "KOORDINATOR_STATE_DIR" {
			env = &c.Env[i]
		}
	}
	switch {
	case env != nil && env.ValueFrom != nil:
		return "", false
	case env == nil || env.Value == "":
		add(c.Name, RuleStateDir, fix,
			"runs koordinator from a read-only image volume without KOORDINATOR_STATE_DIR, so its state files (the pod-local channel) cannot be written next to the binary")
		return "", false
	case !path.IsAbs(env.Value):
		add(c.Name, RuleStateDir, fix, "KOORDINATOR_STATE_DIR %q is not an absolute path; koordinator refuses it", env.Value)
		return "", false
	}
	dir := path.Clean(env.Value)
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != dir {
			continue
		}
		for _, v := range ps.Volumes {
			if v.Name == m.Name && !m.ReadOnly && v.Image == nil && v.ConfigMap == nil && v.Secret == nil && v.DownwardAPI == nil && v.Projected == nil {
				return m.Name, true
			}
		}
		add(c.Name, RuleStateDir, fix, "KOORDINATOR_STATE_DIR %s is volume %s, which is not writable", dir, m.Name)
		return "", false
	}
	add(c.Name, RuleStateDir, fix, "KOORDINATOR_STATE_DIR %s is not where the container mounts a volume, so the other containers do not see its state files", dir)
	return "", false
}

// installedAt returns the index of the first init container that installs koordinator into
// the volume, or -1.
func installedAt(ps *corev1.PodSpec, volume string) int {
	for i := range ps.InitContainers {
		ic := &ps.InitContainers[i]
		if inject.IsInstaller(ic) && !inject.IsWired(ic) && slices.ContainsFunc(ic.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume }) {
			return i
		}
	}
	return -1
}

func initIndex(ps *corev1.PodSpec, name string) int {
	return slices.IndexFunc(ps.InitContainers, func(c corev1.Container) bool { return c.Name == name })
}

func isInit(ps *corev1.PodSpec, c *corev1.Container) bool { return initIndex(ps, c.Name) >= 0 }

// startsLater returns a start dependency of a plain init container that the kubelet starts only
// after that init container has completed: a regular container, or a later init container.
func startsLater(ps *corev1.PodSpec, c *corev1.Container, startDeps []string) (string, bool) {
	at := initIndex(ps, c.Name)
	if at < 0 || inject.IsNativeSidecar(c) {
		return "", false
	}
	for _, d := range startDeps {
		if i := initIndex(ps, d); i > at || i < 0 && slices.ContainsFunc(ps.Containers, func(r corev1.Container) bool { return r.Name == d }) {
			return d, true
		}
	}
	return "", false
}

// ServiceAccount returns the ServiceAccount the pod runs as, and whether koordinator in it needs
// the API with it: some container's literal spec names dependencies (or its spec comes from
// valueFrom, which may), and the token is mounted.
func ServiceAccount(ps corev1.PodSpec) (name string, needsAPI bool) {
	name = ps.ServiceAccountName
	if name == "" {
		name = ps.DeprecatedServiceAccount
	}
	if name == "" {
		name = "default"
	}
	if ps.AutomountServiceAccountToken != nil && !*ps.AutomountServiceAccountToken {
		return name, false
	}
	for _, c := range inject.Containers(&ps) {
		e := inject.SpecEnv(c)
		if e == nil {
			continue
		}
		if e.ValueFrom != nil {
			return name, true
		}
		if s, err := spec.Parse([]byte(e.Value)); err == nil && s.NeedsAPI() {
			return name, true
		}
	}
	return name, false
}

func restartsAlways(ps *corev1.PodSpec) bool {
	return ps.RestartPolicy == "" || ps.RestartPolicy == corev1.RestartPolicyAlways
}

func describeCommand(c *corev1.Container) string {
	if len(c.Command) == 0 {
		return "(the image's ENTRYPOINT)"
	}
	return fmt.Sprintf("%q", c.Command)
}
