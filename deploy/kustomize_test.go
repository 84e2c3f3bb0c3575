package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// The image every manifest here names, and what the kustomize base must hold.
const (
	defaultImage = "ghcr.io/koordinator-dev/koordinator:latest"
	imageName    = "ghcr.io/koordinator-dev/koordinator"
)

var (
	baseResources = []string{"rbac.yaml", "job-example.yaml"}
	// Left out of the base on purpose (see kustomization.yaml): fixed names, a CronJob that keeps
	// running, image volumes that need Kubernetes >= 1.35. Each still applies alone with -f.
	notInBase = []string{"cronjob-example.yaml", "job-image-volume-example.yaml", "job-mesh-example.yaml", "job-no-rbac-example.yaml"}
)

// kustomize renders dir with kubectl's built-in kustomize (the kubectl of make controlplane), as
// kubectl apply -k does.
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	bins, err := testenv.FindBinaries("")
	if errors.Is(err, testenv.ErrNotBuilt) {
		t.Skipf("kubectl is not built (make controlplane): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bins.Kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// rendered is one object of kustomize's output: its kind/name and its images.
type rendered struct {
	id     string
	images []string // every container's and init container's image, and image volumes' references
}

func parseRendered(t *testing.T, out []byte) []rendered {
	t.Helper()
	var objs []rendered
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		meta, _ := m["metadata"].(map[string]any)
		o := rendered{id: m["kind"].(string) + "/" + meta["name"].(string)}
		collectImages(m, &o.images)
		objs = append(objs, o)
	}
	return objs
}

// collectImages finds every "image" field: a string (containers) or an object with a reference
// (image volumes).
func collectImages(v any, into *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "image" {
				switch img := x.(type) {
				case string:
					*into = append(*into, img)
				case map[string]any:
					if ref, ok := img["reference"].(string); ok {
						*into = append(*into, ref)
					}
				}
			}
			collectImages(x, into)
		}
	case []any:
		for _, x := range v {
			collectImages(x, into)
		}
	}
}

func koordinatorImages(objs []rendered) []string {
	var out []string
	for _, o := range objs {
		for _, img := range o.images {
			if strings.Contains(img, "koordinator") {
				out = append(out, img)
			}
		}
	}
	return out
}

// TestKustomizationLists: every manifest here is in the base or deliberately left out of it, so a
// new example is a decision, not an accident.
func TestKustomizationLists(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Resources, baseResources) {
		t.Errorf("kustomization.yaml resources %v, want %v", k.Resources, baseResources)
	}
	files, _ := filepath.Glob("*.yaml")
	for _, f := range files {
		if f != "kustomization.yaml" && !slices.Contains(baseResources, f) && !slices.Contains(notInBase, f) {
			t.Errorf("%s is neither in kustomization.yaml nor in notInBase: decide whether kubectl apply -k deploy/ should create it", f)
		}
	}
}

// TestKustomizeBase renders deploy/ as kubectl apply -k does: the objects of rbac.yaml and
// job-example.yaml, unchanged, with the default image.
func TestKustomizeBase(t *testing.T) {
	out := kustomize(t, ".")
	objs := parseRendered(t, out)
	var ids []string
	for _, o := range objs {
		ids = append(ids, o.id)
	}
	slices.Sort(ids)
	want := []string{"Job/koordinator-example", "Role/koordinator", "RoleBinding/koordinator", "ServiceAccount/koordinator"}
	if !slices.Equal(ids, want) {
		t.Errorf("kubectl kustomize deploy/ gives %v, want %v", ids, want)
	}
	imgs := koordinatorImages(objs)
	if len(imgs) == 0 {
		t.Fatal("no koordinator image in the base")
	}
	for _, img := range imgs {
		if img != defaultImage {
			t.Errorf("base image %q, want %q", img, defaultImage)
		}
	}
}

// TestKustomizeImageOverride: an overlay in a temporary folder, outside the repository as a
// user's would be, with one images: entry changes every koordinator image reference, by tag or by
// digest, and leaves busybox alone.
func TestKustomizeImageOverride(t *testing.T) {
	deployDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ name, override, want string }{
		{"tag", "newName: registry.example.com:5000/team/koordinator\n    newTag: v1.2.3", "registry.example.com:5000/team/koordinator:v1.2.3"},
		{"digest", "newName: registry.example.com/team/koordinator\n    digest: " + digest, "registry.example.com/team/koordinator@" + digest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			overlay := t.TempDir()
			// kustomize takes bases by relative path only.
			rel, err := filepath.Rel(overlay, deployDir)
			if err != nil {
				t.Fatal(err)
			}
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel +
				"\nimages:\n  - name: " + imageName + "\n    " + tc.override + "\n"
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			out := kustomize(t, overlay)
			if bytes.Contains(out, []byte(imageName)) {
				t.Errorf("the override left %s in the output:\n%s", imageName, out)
			}
			objs := parseRendered(t, out)
			base := koordinatorImages(parseRendered(t, kustomize(t, ".")))
			imgs := koordinatorImages(objs)
			if len(imgs) != len(base) {
				t.Errorf("%d koordinator images after the override, %d before", len(imgs), len(base))
			}
			for _, img := range imgs {
				if img != tc.want {
					t.Errorf("image %q, want %q", img, tc.want)
				}
			}
			for _, o := range objs {
				for _, img := range o.images {
					if !strings.Contains(img, "koordinator") && img != "busybox:1.37" {
						t.Errorf("%s: image %q changed", o.id, img)
					}
				}
			}
		})
	}
}

// TestKustomizeEveryExample: the same images: entry rewrites the koordinator image in every
// manifest here when they are a kustomization's resources, as a user's own manifests would be —
// init containers, the mesh example's stopper container, the CronJob's template and the image
// volume's reference included.
func TestKustomizeEveryExample(t *testing.T) {
	dir := t.TempDir()
	files := append(slices.Clone(baseResources), notInBase...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := "resources: [" + strings.Join(files, ", ") + "]\nimages:\n  - name: " + imageName +
		"\n    newName: registry.example.com/team/koordinator\n    newTag: v1.2.3\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	out := kustomize(t, dir)
	if bytes.Contains(out, []byte(imageName)) {
		t.Errorf("the override left %s in the output:\n%s", imageName, out)
	}
	var before int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		before += bytes.Count(b, []byte(defaultImage))
	}
	imgs := koordinatorImages(parseRendered(t, out))
	if len(imgs) != before {
		t.Errorf("%d koordinator images rendered, the manifests name %s %d times", len(imgs), defaultImage, before)
	}
	for _, img := range imgs {
		if img != "registry.example.com/team/koordinator:v1.2.3" {
			t.Errorf("image %q, want registry.example.com/team/koordinator:v1.2.3", img)
		}
	}
}
