package lint

import (
	"os"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// example is the pod template of deploy/job-example.yaml: clean by definition.
func example(t *testing.T) corev1.PodTemplateSpec { return jobTemplate(t, "job-example.yaml") }

// jobTemplate is the pod template of the Job in deploy/file.
func jobTemplate(t *testing.T, file string) corev1.PodTemplateSpec {
	t.Helper()
	b, err := os.ReadFile("../../deploy/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(b, &job); err != nil {
		t.Fatal(err)
	}
	return job.Spec.Template
}

func setSpec(c *corev1.Container, value string) {
	for i := range c.Env {
		if c.Env[i].Name == "KOORDINATOR_SPEC" {
			c.Env[i].Value = value
		}
	}
}

func TestExampleIsClean(t *testing.T) {
	if f := Template(example(t)); len(f) != 0 {
		t.Errorf("deploy/job-example.yaml: %+v", f)
	}
}

// The other examples are clean too: a stopper run from the koordinator image, wrappers that
// never use the API (no ServiceAccount needed), and the binary from an image volume.
func TestOtherExamplesAreClean(t *testing.T) {
	for _, f := range []string{"job-mesh-example.yaml", "job-no-rbac-example.yaml", "job-image-volume-example.yaml"} {
		if got := Template(jobTemplate(t, f)); len(got) != 0 {
			t.Errorf("deploy/%s: %+v", f, got)
		}
	}
}

func TestRules(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		rule, container, message string
		change                   func(ps *corev1.PodSpec)
	}{
		{RuleSpec, "main", `KOORDINATOR_SPEC: unknown field "startdeps" (did you mean "startDeps"?)`, func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[1], `{"startdeps": ["proxy"]}`)
		}},
		{RuleTypo, "main", "KOOORDINATOR_SPEC (three O's)", func(ps *corev1.PodSpec) {
			ps.Containers[1].Env[0].Name = "KOOORDINATOR_SPEC"
		}},
		{RuleDeps, "main", `start dependency "db" is not a container`, func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[1], `{"startDeps": ["db"]}`)
		}},
		{RuleDeps, "main", `is this container itself`, func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[1], `{"stopDeps": ["main"]}`)
		}},
		{RuleDeps, "proxy", "cycle", func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[0], `{"startDeps": ["main"]}`)
		}},
		{RuleStopDepNative, "proxy", `stop dependency "mesh" is a native sidecar`, func(ps *corev1.PodSpec) {
			ps.InitContainers = append(ps.InitContainers, corev1.Container{Name: "mesh", Image: "m", RestartPolicy: &always})
			setSpec(&ps.Containers[0], `{"stopDeps": ["main", "mesh"]}`)
		}},
		{RuleNotWrapped, "main", `its command ["sh" "-c"] does not run behind koordinator`, func(ps *corev1.PodSpec) {
			ps.Containers[1].Command = ps.Containers[1].Command[1:]
		}},
		{RuleNotWrapped, "main", "(the image's ENTRYPOINT)", func(ps *corev1.PodSpec) {
			ps.Containers[1].Command = nil
		}},
		{RuleNoMount, "main", "mounts no volume at /koordinator", func(ps *corev1.PodSpec) {
			ps.Containers[1].VolumeMounts = ps.Containers[1].VolumeMounts[1:]
		}},
		{RuleNoInstaller, "", "no init container installs it there", func(ps *corev1.PodSpec) {
			ps.InitContainers = nil
		}},
		{RuleNoInstaller, "migrate", "runs koordinator before init container koordinator installs it", func(ps *corev1.PodSpec) {
			m := *ps.Containers[1].DeepCopy()
			m.Name = "migrate"
			setSpec(&m, `{}`)
			ps.InitContainers = append([]corev1.Container{m}, ps.InitContainers...)
		}},
		{RuleStartOrder, "migrate", `is an init container waiting for "proxy"`, func(ps *corev1.PodSpec) {
			m := *ps.Containers[1].DeepCopy()
			m.Name = "migrate"
			ps.InitContainers = append(ps.InitContainers, m) // main's spec: startDeps proxy
		}},
		{RuleStopDelay, "proxy", "stopDelay 1m0s is longer than the pod's terminationGracePeriodSeconds (30s)", func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[0], `{"stopDeps": ["main"], "stopDelay": "1m"}`)
		}},
		{RuleRestartAlways, "proxy", "restartPolicy is Always", func(ps *corev1.PodSpec) {
			ps.RestartPolicy = corev1.RestartPolicyAlways
		}},
		{RuleNoAPIStopDep, "proxy", `stop dependency "main" does not run behind koordinator, and without the API`, func(ps *corev1.PodSpec) {
			setSpec(&ps.Containers[0], `{"name": "proxy", "api": false, "stopDeps": ["main"]}`)
			ps.Containers[1].Command = []string{"sh", "-c"}
			ps.Containers[1].Env = nil
		}},
		{RuleNoServiceAccount, "", "default ServiceAccount", func(ps *corev1.PodSpec) {
			ps.ServiceAccountName = ""
		}},
		{RuleNoServiceAccount, "", "automountServiceAccountToken is false", func(ps *corev1.PodSpec) {
			no := false
			ps.AutomountServiceAccountToken = &no
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rule+"/"+tt.message, func(t *testing.T) {
			tmpl := example(t)
			tt.change(&tmpl.Spec)
			fs := Template(tmpl)
			if len(fs) != 1 {
				t.Fatalf("want one finding, got %+v", fs)
			}
			f := fs[0]
			if f.Rule != tt.rule || f.Container != tt.container || !strings.Contains(f.Message, tt.message) || f.Fix == "" {
				t.Errorf("got %+v, want rule %s container %q message containing %q", f, tt.rule, tt.container, tt.message)
			}
		})
	}
}

// A cycle is reported once, by the first container in it; the other containers' own problems
// are still reported.
func TestCycleOnceOtherProblemsStill(t *testing.T) {
	tmpl := example(t)
	setSpec(&tmpl.Spec.Containers[0], `{"startDeps": ["main"], "stopDeps": ["main"]}`)
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, *tmpl.Spec.Containers[1].DeepCopy())
	tmpl.Spec.Containers[2].Name = "other"
	setSpec(&tmpl.Spec.Containers[2], `{"startDeps": ["db"]}`)
	var got []string
	for _, f := range Template(tmpl) {
		got = append(got, f.Container+":"+f.Rule)
	}
	if strings.Join(got, " ") != "proxy:deps other:deps" {
		t.Errorf("findings %v, want proxy's cycle and other's unknown db", got)
	}
}

func TestSpecFromValueFromIsNotJudged(t *testing.T) {
	tmpl := example(t)
	tmpl.Spec.Containers[1].Env[0] = corev1.EnvVar{Name: "KOORDINATOR_SPEC", ValueFrom: &corev1.EnvVarSource{}}
	if f := Template(tmpl); len(f) != 0 {
		t.Errorf("%+v", f)
	}
}

// An init container may wait for a native sidecar or an init container before it.
func TestInitContainerMayWaitForEarlierOnes(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tmpl := example(t)
	ps := &tmpl.Spec
	mesh := corev1.Container{Name: "mesh", Image: "m", RestartPolicy: &always}
	m := *ps.Containers[1].DeepCopy()
	m.Name = "migrate"
	setSpec(&m, `{"startDeps": ["mesh"]}`)
	ps.InitContainers = append(ps.InitContainers, mesh, m)
	setSpec(&ps.Containers[0], `{"stopDeps": ["main", "migrate"], "stopDelay": "1s"}`)
	if f := Template(tmpl); len(f) != 0 {
		t.Errorf("%+v", f)
	}
}

// imageVolumeExample is the pod template of deploy/job-image-volume-example.yaml.
func imageVolumeExample(t *testing.T) corev1.PodTemplateSpec {
	return jobTemplate(t, "job-image-volume-example.yaml")
}

func setEnv(c *corev1.Container, name, value string) {
	for i := range c.Env {
		if c.Env[i].Name == name {
			c.Env[i].Value = value
		}
	}
}

// The binary from an image volume: the mount must show it where the command runs it, and the
// state files need a writable folder that every container shares.
func TestImageVolumeRules(t *testing.T) {
	tests := []struct {
		rule, container, message string // rule "" means clean
		change                   func(ps *corev1.PodSpec)
	}{
		{"", "", "", func(ps *corev1.PodSpec) {
			// Without subPath, running /koordinator/bin/koordinator is as good.
			for i := range ps.Containers {
				c := &ps.Containers[i]
				c.Command[0] = "/koordinator/bin/koordinator"
				c.VolumeMounts[0].SubPath = ""
			}
		}},
		{RuleNoMount, "main", "image volume koordinator shows the koordinator image's /bin/koordinator at /koordinator/bin/koordinator", func(ps *corev1.PodSpec) {
			ps.Containers[1].VolumeMounts[0].SubPath = ""
		}},
		{RuleStateDir, "main", "without KOORDINATOR_STATE_DIR", func(ps *corev1.PodSpec) {
			ps.Containers[1].Env = ps.Containers[1].Env[:1]
		}},
		{RuleStateDir, "main", `KOORDINATOR_STATE_DIR "koordinator-state" is not an absolute path`, func(ps *corev1.PodSpec) {
			setEnv(&ps.Containers[1], "KOORDINATOR_STATE_DIR", "koordinator-state")
		}},
		{RuleStateDir, "main", "KOORDINATOR_STATE_DIR /tmp is not where the container mounts a volume", func(ps *corev1.PodSpec) {
			setEnv(&ps.Containers[1], "KOORDINATOR_STATE_DIR", "/tmp")
		}},
		{RuleStateDir, "main", "KOORDINATOR_STATE_DIR /koordinator-state is volume koordinator-state, which is not writable", func(ps *corev1.PodSpec) {
			ps.Containers[1].VolumeMounts[1].ReadOnly = true
		}},
		{RuleStateDir, "", "different volumes, koordinator-state (proxy) and other-state (main)", func(ps *corev1.PodSpec) {
			ps.Volumes = append(ps.Volumes, corev1.Volume{Name: "other-state", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			ps.Containers[1].VolumeMounts[1].Name = "other-state"
		}},
		{RuleNoInstaller, "", "no init container installs it there", func(ps *corev1.PodSpec) {
			ps.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.rule+"/"+tt.message, func(t *testing.T) {
			tmpl := imageVolumeExample(t)
			tt.change(&tmpl.Spec)
			fs := Template(tmpl)
			if tt.rule == "" {
				if len(fs) != 0 {
					t.Errorf("want no finding, got %+v", fs)
				}
				return
			}
			if len(fs) != 1 {
				t.Fatalf("want one finding, got %+v", fs)
			}
			f := fs[0]
			if f.Rule != tt.rule || f.Container != tt.container || !strings.Contains(f.Message, tt.message) || f.Fix == "" {
				t.Errorf("got %+v, want rule %s container %q message containing %q", f, tt.rule, tt.container, tt.message)
			}
		})
	}
}
