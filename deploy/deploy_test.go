// Package deploy holds the manifests users copy; this test decodes them with the Kubernetes API
// types, strictly, and checks the wiring koordinator relies on.
package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// documents splits a multi-document YAML file and returns each document as JSON with its kind.
func documents(t *testing.T, path string) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out[meta.Kind] = doc
	}
	return out
}

// decode is strict: a misspelt field in a manifest fails the test, as kubectl's validation would.
func decode(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("decoding: %v", err)
	}
}

func TestRBAC(t *testing.T) {
	docs := documents(t, "rbac.yaml")
	var sa corev1.ServiceAccount
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	decode(t, docs["ServiceAccount"], &sa)
	decode(t, docs["Role"], &role)
	decode(t, docs["RoleBinding"], &binding)

	if len(role.Rules) != 1 {
		t.Fatalf("want one rule, got %v", role.Rules)
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods"}) {
		t.Errorf("rule must be on core pods, got %+v", r)
	}
	for _, v := range []string{"list", "watch"} {
		if !slices.Contains(r.Verbs, v) {
			t.Errorf("rule lacks verb %q", v)
		}
	}
	for _, v := range r.Verbs {
		if !slices.Contains([]string{"list", "watch", "get"}, v) {
			t.Errorf("rule grants %q, more than koordinator needs", v)
		}
	}
	if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Name {
		t.Errorf("RoleBinding refers to %+v, want Role %s", binding.RoleRef, role.Name)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name {
		t.Errorf("RoleBinding subjects %+v, want ServiceAccount %s", binding.Subjects, sa.Name)
	}
}

func TestJobExample(t *testing.T) {
	var job batchv1.Job
	decode(t, documents(t, "job-example.yaml")["Job"], &job)
	checkPodTemplate(t, job.Spec.Template)
}

// The injected-mesh Job: the stand-in proxy is not wrapped, a stopper stops it.
func TestMeshExample(t *testing.T) {
	var job batchv1.Job
	decode(t, documents(t, "job-mesh-example.yaml")["Job"], &job)
	checkPodTemplate(t, job.Spec.Template)
	stopper := job.Spec.Template.Spec.Containers[2]
	sp := parseSpec(t, stopper)
	if len(stopper.Args) != 0 || sp.StopAction == nil || sp.CheckStopper() != nil {
		t.Errorf("mesh-stopper must run koordinator without a command, with a stopAction and stopDeps: %v %+v", stopper.Args, sp)
	}
}

// The Job without API access: no token, no ServiceAccount, every wrapper without the API.
func TestNoRBACExample(t *testing.T) {
	var job batchv1.Job
	decode(t, documents(t, "job-no-rbac-example.yaml")["Job"], &job)
	ps := job.Spec.Template.Spec
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken || ps.ServiceAccountName != "" {
		t.Errorf("want no ServiceAccount and no token, got %q, automount %v", ps.ServiceAccountName, ps.AutomountServiceAccountToken)
	}
	checkPodTemplate(t, job.Spec.Template)
	for _, c := range ps.Containers {
		if sp := parseSpec(t, c); sp.NeedsAPI() || sp.Name != c.Name {
			t.Errorf("%s: want a spec without the API that names its container, got %+v", c.Name, sp)
		}
	}
}

// The Job with the binary from an image volume: the containers run as in job-example.yaml; only
// the volumes, the mounts and the state folder differ.
func TestImageVolumeExample(t *testing.T) {
	var job, plain batchv1.Job
	decode(t, documents(t, "job-image-volume-example.yaml")["Job"], &job)
	decode(t, documents(t, "job-example.yaml")["Job"], &plain)
	checkPodTemplate(t, job.Spec.Template)
	ps := job.Spec.Template.Spec
	for _, v := range ps.Volumes {
		if v.Image != nil && (v.Image.Reference != plain.Spec.Template.Spec.InitContainers[0].Image || v.Image.PullPolicy != corev1.PullIfNotPresent) {
			t.Errorf("image volume %s: %+v, want the image of job-example.yaml's init container, pullPolicy IfNotPresent", v.Name, v.Image)
		}
	}
	if len(ps.Containers) != len(plain.Spec.Template.Spec.Containers) {
		t.Fatalf("%d containers, job-example.yaml has %d", len(ps.Containers), len(plain.Spec.Template.Spec.Containers))
	}
	for i, c := range ps.Containers {
		want := plain.Spec.Template.Spec.Containers[i]
		got := c.DeepCopy()
		got.VolumeMounts, want.VolumeMounts = nil, nil
		got.Env = slices.DeleteFunc(got.Env, func(e corev1.EnvVar) bool { return e.Name == "KOORDINATOR_STATE_DIR" })
		a, _ := yaml.Marshal(got)
		b, _ := yaml.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Errorf("container %s differs from job-example.yaml's beyond mounts and KOORDINATOR_STATE_DIR:\n%s\nvs\n%s", c.Name, a, b)
		}
	}
}

func parseSpec(t *testing.T, c corev1.Container) spec.Spec {
	t.Helper()
	var raw string
	for _, e := range c.Env {
		if e.Name == spec.EnvVar {
			raw = e.Value
		}
	}
	sp, err := spec.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	return sp
}

func TestCronJobExample(t *testing.T) {
	var cron batchv1.CronJob
	decode(t, documents(t, "cronjob-example.yaml")["CronJob"], &cron)
	if cron.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("concurrencyPolicy %q, want Forbid", cron.Spec.ConcurrencyPolicy)
	}
	checkPodTemplate(t, cron.Spec.JobTemplate.Spec.Template)

	var job batchv1.Job
	decode(t, documents(t, "job-example.yaml")["Job"], &job)
	a, _ := yaml.Marshal(job.Spec.Template)
	b, _ := yaml.Marshal(cron.Spec.JobTemplate.Spec.Template)
	if !bytes.Equal(a, b) {
		t.Error("the CronJob's pod template differs from the Job example's")
	}
}

// checkPodTemplate checks what a user relies on: the init container installs the binary into
// the emptyDir (or an image volume of the koordinator image holds it), every wrapped container
// mounts it, specs parse, the dependencies name real
// containers, and a container whose spec uses the API has the podinfo volume and the
// ServiceAccount of rbac.yaml.
func checkPodTemplate(t *testing.T, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	ps := tmpl.Spec
	var sa corev1.ServiceAccount
	decode(t, documents(t, "rbac.yaml")["ServiceAccount"], &sa)
	volumes := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		volumes[v.Name] = v
	}

	// The binary comes from an image volume of the koordinator image, or else an init container
	// installs it into an emptyDir.
	binVolume, fromImage := "", false
	for _, v := range ps.Volumes {
		if v.Image != nil && strings.Contains(v.Image.Reference, "koordinator") {
			binVolume, fromImage = v.Name, true
		}
	}
	if fromImage {
		if len(ps.InitContainers) != 0 {
			t.Errorf("the binary comes from image volume %s: want no init container, got %d", binVolume, len(ps.InitContainers))
		}
	} else {
		if len(ps.InitContainers) != 1 {
			t.Fatalf("want one init container installing the binary, got %d", len(ps.InitContainers))
		}
		install := ps.InitContainers[0]
		if !strings.Contains(install.Image, "koordinator") || !slices.Equal(install.Args, []string{"/koordinator"}) || len(install.Command) != 0 {
			t.Errorf("init container must run the koordinator image with args [/koordinator], got image %q command %v args %v",
				install.Image, install.Command, install.Args)
		}
		var ok bool
		binVolume, ok = mountOf(install, "/koordinator")
		if !ok || volumes[binVolume].EmptyDir == nil {
			t.Fatalf("init container must mount an emptyDir at /koordinator")
		}
	}
	stateVolumes := map[string]bool{}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "example", Namespace: "default"}, Spec: ps}
	wrapped := 0
	for _, c := range ps.Containers {
		if len(c.Command) == 0 || c.Command[0] != "/koordinator/koordinator" && c.Command[0] != "/bin/koordinator" {
			continue
		}
		wrapped++
		if v, ok := mountOf(c, "/koordinator"); !ok || v != binVolume {
			t.Errorf("%s: runs koordinator but does not mount %s at /koordinator", c.Name, binVolume)
		}
		if fromImage {
			stateVolumes[checkImageVolumeMounts(t, c, volumes)] = true
		}
		sp := parseSpec(t, c)
		if sp.NeedsAPI() {
			checkAPIAccess(t, ps, c, sa.Name, volumes)
		}
		var raw string
		for _, e := range c.Env {
			if e.Name == spec.EnvVar {
				raw = e.Value
			}
		}
		if !sp.HasDeps() {
			t.Errorf("%s: wrapped without dependencies", c.Name)
		}
		if err := watch.ValidateDeps(pod, c.Name, sp.StartDeps, sp.StopDeps); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		self, ok := watch.FindSelf(pod, append(slices.Clone(c.Command), c.Args...), raw)
		if !ok || self != c.Name {
			t.Errorf("%s: koordinator would not find its own container (got %q, %v)", c.Name, self, ok)
		}
	}
	if wrapped < 2 {
		t.Errorf("want a sidecar and a main container wrapped by koordinator, got %d", wrapped)
	}
	if fromImage && len(stateVolumes) != 1 {
		t.Errorf("every wrapped container must keep its state in the same volume, got %v", stateVolumes)
	}
}

// checkImageVolumeMounts checks a container that runs koordinator from an image volume: the
// image's /bin shows at /koordinator (subPath bin, read-only anyway), so the binary is at
// /koordinator/koordinator; and KOORDINATOR_STATE_DIR names the absolute mount path of a
// writable emptyDir, since nothing can be written next to the binary. It returns that emptyDir.
func checkImageVolumeMounts(t *testing.T, c corev1.Container, volumes map[string]corev1.Volume) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/koordinator" && (m.SubPath != "bin" || m.SubPathExpr != "") {
			t.Errorf("%s: mounts the koordinator image at /koordinator with subPath %q, want bin (the image holds /bin/koordinator)", c.Name, m.SubPath)
		}
	}
	dir := ""
	for _, e := range c.Env {
		if e.Name == "KOORDINATOR_STATE_DIR" {
			dir = e.Value
		}
	}
	if !path.IsAbs(dir) {
		t.Errorf("%s: KOORDINATOR_STATE_DIR %q, want the absolute path of a writable emptyDir", c.Name, dir)
		return ""
	}
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) == path.Clean(dir) {
			if volumes[m.Name].EmptyDir == nil || m.ReadOnly || m.SubPath != "" || m.SubPathExpr != "" {
				t.Errorf("%s: KOORDINATOR_STATE_DIR %s is volume %s, want a whole, writable emptyDir", c.Name, dir, m.Name)
			}
			return m.Name
		}
	}
	t.Errorf("%s: KOORDINATOR_STATE_DIR %s is not a mount path", c.Name, dir)
	return ""
}

// checkAPIAccess checks what a container whose spec uses the API needs: the ServiceAccount of
// rbac.yaml and the downward-API podinfo volume.
func checkAPIAccess(t *testing.T, ps corev1.PodSpec, c corev1.Container, saName string, volumes map[string]corev1.Volume) {
	t.Helper()
	if ps.ServiceAccountName != saName {
		t.Errorf("%s uses the API: serviceAccountName %q, want %q from rbac.yaml", c.Name, ps.ServiceAccountName, saName)
	}
	v, ok := mountOf(c, "/etc/podinfo")
	if !ok || volumes[v].DownwardAPI == nil {
		t.Errorf("%s: no downward-API volume at /etc/podinfo", c.Name)
	} else {
		paths := map[string]string{}
		for _, item := range volumes[v].DownwardAPI.Items {
			if item.FieldRef != nil {
				paths[item.Path] = item.FieldRef.FieldPath
			}
		}
		if paths["name"] != "metadata.name" || paths["namespace"] != "metadata.namespace" {
			t.Errorf("%s: podinfo volume must have name and namespace, got %v", c.Name, paths)
		}
	}
}

// mountOf is the volume c mounts at path.
func mountOf(c corev1.Container, path string) (string, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m.Name, true
		}
	}
	return "", false
}
