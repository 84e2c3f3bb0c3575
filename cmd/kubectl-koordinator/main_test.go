package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/rest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/inject")

// call runs the plugin in-process as kubectl would, with stdin.
func call(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return code, out.String(), errOut.String()
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs; got:\n%s", path, got)
	}
}

// injectCases are the golden files: testdata/inject/NAME is injected with the flags, the output
// must equal NAME.golden and stderr NAME.stderr.
var injectCases = []struct {
	file  string
	flags []string
}{
	{"job.yaml", []string{"--sidecar", "proxy", "--stop-delay", "1s"}},
	{"cronjob.yaml", []string{"--sidecar", "ignored-for-annotated-templates"}},
	{"cronjob-example.yaml", nil},
	{"deployment.yaml", nil},
	{"statefulset.yaml", []string{"--sidecar", "mesh", "--image", "registry.example.com/koordinator:v1.2.3"}},
	{"daemonset.yaml", nil},
	{"multi.yaml", []string{"--main", "app"}},
	{"pod.yaml", []string{"--sidecar", "proxy", "--entrypoint", "proxy=/bin/proxy --listen :5432", "--cmd", "proxy=", "--entrypoint", `main=["/bin/main", "--verbose"]`}},
	{"list.json", nil},
	{"skipped.yaml", nil},
}

func TestInjectGolden(t *testing.T) {
	for _, tc := range injectCases {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "inject", tc.file)
			code, out, errOut := call(t, "", append([]string{"inject", "-f", path}, tc.flags...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			golden(t, path+".golden", out)
			golden(t, path+".stderr", errOut)

			// Idempotent: injecting the output changes nothing, whatever the flags.
			code, again, errOut := call(t, out, append([]string{"inject", "-f", "-"}, tc.flags...)...)
			if code != 0 || again != out {
				t.Errorf("second injection (exit %d, %s) changed the output:\n%s", code, errOut, again)
			}
			// And what inject writes, lint finds clean.
			if code, out, _ := call(t, out, "lint", "-f", "-"); code != 0 {
				t.Errorf("lint of the output: exit %d:\n%s", code, out)
			}
		})
	}
}

// The plain Job of testdata wired by flags is deploy/job-example.yaml, but for the comment the
// example has on its init container; and the example itself is recognised as wired.
func TestInjectMirrorsTheHandWiredExample(t *testing.T) {
	example, err := os.ReadFile("../../deploy/job-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const comment = "        # Copies the binary into the shared emptyDir (the image's entrypoint is\n        # /bin/koordinator --install).\n"
	if !bytes.Contains(example, []byte(comment)) {
		t.Fatal("the example's init container comment changed; update this test")
	}
	want := strings.Replace(string(example), comment, "", 1)
	_, out, errOut := call(t, "", "inject", "-f", "testdata/inject/job.yaml", "--sidecar", "proxy", "--stop-delay", "1s")
	if out != want {
		t.Errorf("injected job.yaml differs from deploy/job-example.yaml (%s):\n%s", errOut, out)
	}
	for _, flags := range [][]string{nil, {"--sidecar", "proxy"}, {"--main", "main", "--stop-delay", "1s"}} {
		for _, f := range []string{"../../deploy/job-example.yaml", "../../deploy/cronjob-example.yaml"} {
			want, _ := os.ReadFile(f)
			code, out, errOut := call(t, "", append([]string{"inject", "-f", f}, flags...)...)
			if code != 0 || out != string(want) {
				t.Errorf("%s %v: exit %d (%s), changed:\n%s", f, flags, code, errOut, out)
			}
		}
	}
}

func TestInjectInPlace(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{ // file -> what it must hold after inject --in-place
		"job.yaml":     "testdata/inject/job.yaml.golden",
		"cronjob.yaml": "testdata/inject/cronjob.yaml.golden",
		"rbac.yaml":    "../../deploy/rbac.yaml", // no pod template: untouched
	}
	for f, src := range map[string]string{"job.yaml": "testdata/inject/job.yaml", "cronjob.yaml": "testdata/inject/cronjob.yaml", "rbac.yaml": "../../deploy/rbac.yaml"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An error in any file: nothing is written.
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("kind: Pod\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: proxy, image: i}\n  - {name: main, image: i, command: [/m]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := call(t, "", "inject", "-f", dir, "--sidecar", "proxy", "--stop-delay", "1s", "--in-place", "--offline")
	if code != exitUsage || !strings.Contains(errOut, "bad.yml: Pod/: container(s) proxy have no command") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "job.yaml")); !bytes.Contains(b, []byte("command: [sh, -c]")) {
		t.Fatal("job.yaml was written although another file failed")
	}
	if err := os.Remove(bad); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := call(t, "", "inject", "-f", dir, "--sidecar", "proxy", "--stop-delay", "1s", "-i")
	if code != 0 || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	for f, golden := range files {
		got, _ := os.ReadFile(filepath.Join(dir, f))
		want, _ := os.ReadFile(golden)
		if string(got) != string(want) {
			t.Errorf("%s:\n%s", f, got)
		}
		if st, _ := os.Stat(filepath.Join(dir, f)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want the file's own 0600", f, st.Mode())
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(files) {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestInjectErrors(t *testing.T) {
	const job = "kind: Job\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: proxy, image: i, command: [/p]}\n      - {name: main, image: i}\n"
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no -f", "", []string{"inject"}, `required flag(s) "filename" not set`},
		{"missing file", "", []string{"inject", "-f", "testdata/nope.yaml"}, "-f testdata/nope.yaml: stat testdata/nope.yaml: no such file or directory"},
		{"stdin in place", job, []string{"inject", "-f", "-", "-i"}, "--in-place cannot write back to stdin"},
		{"bad yaml", "a: [\n", []string{"inject", "-f", "-"}, "-: document 1: yaml: "},
		{"offline", job, []string{"inject", "-f", "-", "--sidecar", "proxy", "--offline"}, "container(s) main have no command, so their image's ENTRYPOINT (and CMD, without args) are needed and --offline refuses"},
		{"entrypoint without cmd", job, []string{"inject", "-f", "-", "--sidecar", "proxy", "--entrypoint", "main=/m"}, "container(s) main have no command"},
		{"bad entrypoint flag", job, []string{"inject", "-f", "-", "--entrypoint", "main"}, `--entrypoint "main": write NAME=WORDS`},
		{"bad entrypoint json", job, []string{"inject", "-f", "-", "--entrypoint", "main=[1]"}, "is not a JSON list of strings"},
		{"unknown sidecar", job, []string{"inject", "-f", "-", "--sidecar", "db"}, `-: Job/: --sidecar names "db", which is not a container of the pod (containers: proxy, main)`},
		{"bad duration", job, []string{"inject", "-f", "-", "--sidecar", "proxy", "--stop-delay", "soon"}, `--stop-delay: KOORDINATOR_SPEC: "stopDelay" is "soon", which is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := call(t, tt.stdin, tt.args...)
			if code != exitUsage || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, nothing written, %q", code, out, errOut, tt.want)
			}
		})
	}
}

func TestLint(t *testing.T) {
	broken := strings.NewReplacer(`"startDeps": ["proxy"]`, `"startDeps": ["prox"]`, "      serviceAccountName: koordinator\n", "").
		Replace(mustRead(t, "../../deploy/job-example.yaml"))
	code, out, _ := call(t, broken, "lint", "-f", "-")
	want := `-: Job/koordinator-example: container main: start dependency "prox" is not a container of the pod (containers: koordinator, proxy, main); fix: name other containers of this pod, without start cycles [deps]
-: Job/koordinator-example: runs as the namespace's default ServiceAccount, but koordinator watches its pod through the API (pods: list, watch); fix: set serviceAccountName to one allowed to list and watch pods (deploy/rbac.yaml: koordinator; inject --rbac does both) [no-service-account]
`
	if code != exitFindings || out != want {
		t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out, want)
	}

	code, out, _ = call(t, broken, "lint", "-f", "-", "-o", "json")
	var found []finding
	if err := json.Unmarshal([]byte(out), &found); err != nil || code != exitFindings || len(found) != 2 {
		t.Fatalf("exit %d, %v, output:\n%s", code, err, out)
	}
	if f := found[0]; f.File != "-" || f.Document != 1 || f.Object != "Job/koordinator-example" || f.Container != "main" || f.Rule != "deps" {
		t.Errorf("%+v", f)
	}

	code, out, _ = call(t, "", "lint", "-f", "../../deploy", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("deploy/: exit %d, %s", code, out)
	}
	if code, _, errOut := call(t, "", "lint", "-f", "../../deploy", "-o", "yaml"); code != exitUsage || !strings.Contains(errOut, `-o "yaml"`) {
		t.Errorf("-o yaml: exit %d, %s", code, errOut)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"inject", "--help"}, {"lint", "--help"}} {
		code, out, _ := call(t, "", args...)
		if code != 0 || !strings.Contains(out, "kubectl koordinator") {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
	_, out, _ := call(t, "", "inject", "--help")
	for _, flag := range []string{"--kubeconfig", "--context", "--namespace", "--sidecar", "--entrypoint", "--in-place", "koordinator.dev/sidecars"} {
		if !strings.Contains(out, flag) {
			t.Errorf("inject --help lacks %s", flag)
		}
	}
	if code, out, _ := call(t, "", "completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d", code)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInjectRBAC(t *testing.T) {
	rbac := mustRead(t, "../../deploy/rbac.yaml")
	for strings.HasPrefix(rbac, "#") { // the file's header comment
		rbac = rbac[strings.IndexByte(rbac, '\n')+1:]
	}
	if rbac != rbacObjects {
		t.Errorf("rbacObjects differs from deploy/rbac.yaml:\n%s", rbacObjects)
	}
	plain := strings.Replace(mustRead(t, "testdata/inject/job.yaml"), "      serviceAccountName: koordinator\n", "", 1)
	code, out, errOut := call(t, plain, "inject", "-f", "-", "--sidecar", "proxy", "--stop-delay", "1s", "--rbac")
	golden := mustRead(t, "testdata/inject/job.yaml.golden")
	if code != 0 || out != rbacObjects+"---\n"+golden {
		t.Errorf("exit %d (%s), output:\n%s", code, errOut, out)
	}
	if code, _, errOut := call(t, plain, "inject", "-f", "testdata/inject/job.yaml", "--rbac", "-i"); code != exitUsage || !strings.Contains(errOut, "--rbac adds objects") {
		t.Errorf("--rbac --in-place: exit %d, %s", code, errOut)
	}
}

// inject warns, with lint's findings, about what it cannot fix on its own.
func TestInjectWarns(t *testing.T) {
	plain := strings.Replace(mustRead(t, "testdata/inject/job.yaml"), "      serviceAccountName: koordinator\n", "", 1)
	code, out, errOut := call(t, plain, "inject", "-f", "-", "--sidecar", "proxy")
	if code != 0 || out == "" || !strings.Contains(errOut, "-: Job/koordinator-example: warning: runs as the namespace's default ServiceAccount") {
		t.Errorf("exit %d, stderr %s", code, errOut)
	}
}

func TestLintCluster(t *testing.T) {
	var asked []string
	orig := newAccessChecker
	t.Cleanup(func() { newAccessChecker = orig })
	newAccessChecker = func(*rest.Config) (accessChecker, error) {
		return func(_ context.Context, ns, sa, verb string) (bool, string, error) {
			asked = append(asked, ns+"/"+sa+":"+verb)
			switch {
			case sa == "broken":
				return false, "", errors.New("subjectaccessreviews.authorization.k8s.io is forbidden")
			case sa == "koordinator" && ns == "batch":
				return true, "", nil
			case verb == "watch":
				return false, "no RBAC policy matched", nil
			}
			return true, "", nil
		}, nil
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: batch}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	example := mustRead(t, "../../deploy/job-example.yaml")
	// In the context's namespace, allowed: clean, and asked once for the two Jobs.
	code, out, errOut := call(t, example+"---\n"+example, "lint", "--kubeconfig", kubeconfig, "--cluster", "-f", "-")
	if code != 0 || len(asked) != 2 {
		t.Errorf("exit %d, asked %q, output %s%s", code, asked, out, errOut)
	}
	// -n elsewhere: watch denied.
	code, out, _ = call(t, example, "lint", "--kubeconfig", kubeconfig, "--cluster", "-n", "other", "-f", "-")
	want := "-: Job/koordinator-example: its ServiceAccount koordinator may not watch (no RBAC policy matched) pods in namespace other, and koordinator watches its pod through the API; fix: kubectl apply -n other -f deploy/rbac.yaml and set serviceAccountName: koordinator (inject --rbac does both), or grant koordinator pods: list, watch [rbac]\n"
	if code != exitFindings || out != want {
		t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out, want)
	}
	// The manifest's own namespace wins over -n.
	inNS := strings.Replace(example, "  name: koordinator-example\n", "  name: koordinator-example\n  namespace: batch\n", 1)
	if code, out, _ := call(t, inNS, "lint", "--kubeconfig", kubeconfig, "--cluster", "-n", "other", "-f", "-"); code != 0 {
		t.Errorf("namespace in the manifest: exit %d, %s", code, out)
	}
	// The review itself refused: exit 2, one line.
	broken := strings.Replace(example, "serviceAccountName: koordinator", "serviceAccountName: broken", 1)
	code, _, errOut = call(t, broken, "lint", "--kubeconfig", kubeconfig, "--cluster", "-f", "-")
	if code != exitUsage || !strings.Contains(errOut, "--cluster: asking whether ServiceAccount broken may list pods in namespace batch: subjectaccessreviews") {
		t.Errorf("exit %d, stderr %s", code, errOut)
	}
	// Without --cluster, nothing is asked.
	asked = nil
	if code, _, _ := call(t, example, "lint", "-f", "-"); code != 0 || asked != nil {
		t.Errorf("exit %d, asked %q", code, asked)
	}
}
