package manifest

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func parse(t *testing.T, text string) []*Document {
	t.Helper()
	docs, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func format(t *testing.T, docs []*Document) string {
	t.Helper()
	out, err := Format(docs)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestUnchangedIsByteIdentical(t *testing.T) {
	for _, text := range []string{
		"",
		"---\n",
		"# only a comment\n",
		"a: 1\n---\nb:   2 # odd spacing\n...\n",
		"--- # first\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: b}]\n---\n\n--- \nkind: ConfigMap\n",
		"no newline at end: x",
		"\r\nkind: Pod\r\n---\r\nkind: Job\r\n",
		"{\"kind\": \"Pod\",   \"spec\": {}}",
	} {
		docs := parse(t, text)
		for _, d := range docs {
			if _, err := d.Templates(); err != nil {
				t.Fatal(err)
			}
		}
		if got := format(t, docs); got != text {
			t.Errorf("%q came back as %q", text, got)
		}
	}
	for _, f := range []string{"../../deploy/job-example.yaml", "../../deploy/cronjob-example.yaml", "../../deploy/rbac.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := format(t, parse(t, string(b))); got != string(b) {
			t.Errorf("%s changed", f)
		}
	}
}

func TestTemplatesOfEveryKind(t *testing.T) {
	const pod = "spec:\n  containers:\n    - name: c\n      image: i\n"
	indent := func(s string, n int) string {
		var b strings.Builder
		for _, l := range strings.SplitAfter(s, "\n") {
			if l != "" {
				b.WriteString(strings.Repeat(" ", n) + l)
			}
		}
		return b.String()
	}
	tmplAt := func(kind, prefix string, depth int) string {
		return "kind: " + kind + "\nmetadata:\n  name: x\n" + prefix + indent("template:\n"+indent(pod, 2), depth)
	}
	text := strings.Join([]string{
		"kind: Pod\nmetadata:\n  name: x\n  namespace: ns\n" + pod,
		"kind: PodTemplate\nmetadata:\n  name: x\n" + "template:\n" + indent(pod, 2),
		tmplAt("Job", "spec:\n", 2),
		tmplAt("Deployment", "spec:\n", 2),
		tmplAt("StatefulSet", "spec:\n", 2),
		tmplAt("DaemonSet", "spec:\n", 2),
		tmplAt("ReplicaSet", "spec:\n", 2),
		tmplAt("ReplicationController", "spec:\n", 2),
		tmplAt("CronJob", "spec:\n  jobTemplate:\n    spec:\n", 6),
		"kind: ConfigMap\nmetadata:\n  name: x\n",
		"kind: List\nitems:\n" + indent("- "+strings.ReplaceAll(tmplAt("Job", "spec:\n", 2), "\n", "\n  "), 0),
	}, "---\n")
	var got []string
	namespaces := 0
	for _, d := range parse(t, text) {
		ts, err := d.Templates()
		if err != nil {
			t.Fatal(err)
		}
		for _, tp := range ts {
			if len(tp.Value.Spec.Containers) != 1 || tp.Value.Spec.Containers[0].Image != "i" {
				t.Errorf("%s: decoded %+v", tp.Where, tp.Value.Spec)
			}
			got = append(got, tp.Where)
			if tp.Namespace != "" {
				namespaces++
				if tp.Namespace != "ns" || tp.Kind != "Pod" {
					t.Errorf("%s: namespace %q", tp.Where, tp.Namespace)
				}
			}
		}
	}
	want := []string{"Pod/x", "PodTemplate/x", "Job/x", "Deployment/x", "StatefulSet/x", "DaemonSet/x", "ReplicaSet/x",
		"ReplicationController/x", "CronJob/x", "List item 1: Job/x"}
	if !slices.Equal(got, want) {
		t.Errorf("templates\n%q\nwant\n%q", got, want)
	}
	if namespaces != 1 {
		t.Errorf("%d templates with a namespace, want the Pod's alone", namespaces)
	}
}

// TestSetTouchesOnlyWhatChanged: comments, key order, quoting and block scalars of the fields
// that did not change stay as written, in the document that changed and in the others.
func TestSetTouchesOnlyWhatChanged(t *testing.T) {
	const in = `# head comment
kind: Deployment   # the kind
metadata:
  name: web
spec:
  template:
    spec:
      # the containers
      containers:
      - name: app    # the app
        image: "nginx"
        args: [--port, "8080"]
        env:
        - name: A
          value: 'x'   # kept
        command:
        - sh
        - -c
        - |
          exec nginx
---
kind: ConfigMap
data: {a:    b}
`
	const want = `# head comment
kind: Deployment # the kind
metadata:
  name: web
spec:
  template:
    spec:
      # the containers
      containers:
      - name: app # the app
        image: "nginx"
        args: [--port, "8080"]
        env:
        - name: A
          value: 'x' # kept
        - name: B
          value: '{"b": 1}'
        command:
        - /wrap
        - sh
        - -c
        - |
          exec nginx
        volumeMounts:
        - name: v
          mountPath: /v
      volumes:
      - name: v
        emptyDir: {}
---
kind: ConfigMap
data: {a:    b}
`
	docs := parse(t, in)
	ts, err := docs[0].Templates()
	if err != nil {
		t.Fatal(err)
	}
	v := *ts[0].Value.DeepCopy()
	c := &v.Spec.Containers[0]
	c.Command = append([]string{"/wrap"}, c.Command...)
	c.Env = append(c.Env, corev1.EnvVar{Name: "B", Value: `{"b": 1}`})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "v", MountPath: "/v"})
	v.Spec.Volumes = append(v.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if err := ts[0].Set(v); err != nil {
		t.Fatal(err)
	}
	if got := format(t, docs); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSetJSONKeepsKeyOrder(t *testing.T) {
	const in = `{"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "i", "command": ["x"]}]}, "zeta": 1.5}`
	const want = `{
  "kind": "Pod",
  "metadata": {
    "name": "p"
  },
  "spec": {
    "restartPolicy": "Never",
    "containers": [
      {
        "name": "a",
        "image": "i",
        "command": [
          "/wrap",
          "x"
        ]
      }
    ]
  },
  "zeta": 1.5
}
`
	docs := parse(t, in)
	ts, err := docs[0].Templates()
	if err != nil {
		t.Fatal(err)
	}
	v := *ts[0].Value.DeepCopy()
	v.Spec.Containers[0].Command = []string{"/wrap", "x"}
	if err := ts[0].Set(v); err != nil {
		t.Fatal(err)
	}
	if got := format(t, docs); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestSetRefusesAnchors(t *testing.T) {
	const in = "kind: Pod\nspec:\n  containers:\n  - &app\n    name: a\n    image: i\n    command: [x]\n"
	docs := parse(t, in)
	ts, _ := docs[0].Templates()
	v := *ts[0].Value.DeepCopy()
	v.Spec.Containers[0].Command = []string{"y"}
	if err := ts[0].Set(v); err == nil || !strings.Contains(err.Error(), "anchor") {
		t.Fatalf("error %v, want one about the anchor", err)
	}
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"a: 1\n---\nb: [\n":                   "document 2",
		"kind: Pod\nspec:\n  containers: 3\n": "Pod/: not a valid pod template",
	} {
		docs, err := Parse([]byte(text))
		if err == nil {
			for _, d := range docs {
				if _, err = d.Templates(); err != nil {
					break
				}
			}
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", text, err, want)
		}
	}
}
