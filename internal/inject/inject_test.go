package inject

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ctr(name string, command, args []string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox:1.37", Command: command, Args: args}
}

func native(name string) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	c := ctr(name, []string{"/proxy"}, nil)
	c.RestartPolicy = &always
	return c
}

func tmpl(ann map[string]string, restart corev1.RestartPolicy, init []corev1.Container, cs ...corev1.Container) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: ann},
		Spec:       corev1.PodSpec{RestartPolicy: restart, InitContainers: init, Containers: cs},
	}
}

func specOf(t *testing.T, ps corev1.PodSpec, name string) string {
	t.Helper()
	for _, c := range Containers(&ps) {
		if c.Name == name {
			if e := SpecEnv(c); e != nil {
				return e.Value
			}
			return ""
		}
	}
	t.Fatalf("no container %s", name)
	return ""
}

func TestTemplateSpecs(t *testing.T) {
	job := func(ann map[string]string, init ...corev1.Container) corev1.PodTemplateSpec {
		return tmpl(ann, corev1.RestartPolicyNever, init,
			ctr("proxy", []string{"/proxy"}, nil), ctr("main", []string{"sh", "-c"}, []string{"echo"}), ctr("log", []string{"/log"}, nil))
	}
	tests := []struct {
		name  string
		in    corev1.PodTemplateSpec
		opts  Options
		specs map[string]string // container -> KOORDINATOR_SPEC; "" = not coordinated
		notes []string          // substrings
	}{
		{
			name:  "sidecar flag: every other container is a main",
			in:    job(nil),
			opts:  Options{Sidecars: []string{"proxy"}, StopDelay: "1s", StartTimeout: "5m"},
			specs: map[string]string{"proxy": `{"stopDeps": ["main", "log"], "stopDelay": "1s"}`, "main": `{"startDeps": ["proxy"], "startTimeout": "5m"}`, "log": `{"startDeps": ["proxy"], "startTimeout": "5m"}`},
		},
		{
			name:  "main flag: every other container is a sidecar",
			in:    job(nil),
			opts:  Options{Mains: []string{"main"}},
			specs: map[string]string{"proxy": `{"stopDeps": ["main"]}`, "log": `{"stopDeps": ["main"]}`, "main": `{"startDeps": ["proxy", "log"]}`},
		},
		{
			name:  "both flags: the others are left alone",
			in:    job(nil),
			opts:  Options{Mains: []string{"main"}, Sidecars: []string{"proxy"}},
			specs: map[string]string{"proxy": `{"stopDeps": ["main"]}`, "main": `{"startDeps": ["proxy"]}`, "log": ""},
		},
		{
			name:  "annotations win over flags",
			in:    job(map[string]string{AnnotationSidecars: "log, proxy", AnnotationStopDelay: "2s"}),
			opts:  Options{Sidecars: []string{"proxy"}, StopDelay: "1s"},
			specs: map[string]string{"proxy": `{"stopDeps": ["main"], "stopDelay": "2s"}`, "log": `{"stopDeps": ["main"], "stopDelay": "2s"}`, "main": `{"startDeps": ["log", "proxy"]}`},
		},
		{
			name:  "a spec annotation is used as written",
			in:    job(map[string]string{AnnotationSidecars: "proxy", SpecAnnotationPrefix + "log": `{"startDeps":["main"]}`}),
			specs: map[string]string{"proxy": `{"stopDeps": ["main", "log"]}`, "main": `{"startDeps": ["proxy"]}`, "log": `{"startDeps":["main"]}`},
		},
		{
			name: "a native sidecar is a start dependency only",
			in: tmpl(map[string]string{AnnotationSidecars: "mesh"}, corev1.RestartPolicyNever, []corev1.Container{native("mesh")},
				ctr("main", []string{"/app"}, nil)),
			specs: map[string]string{"mesh": "", "main": `{"startDeps": ["mesh"]}`},
			notes: []string{"mesh is a native sidecar"},
		},
		{
			name: "restartPolicy Always: no stop dependencies",
			in: tmpl(map[string]string{AnnotationSidecars: "proxy"}, "", nil,
				ctr("proxy", []string{"/proxy"}, nil), ctr("main", []string{"/app"}, nil)),
			specs: map[string]string{"proxy": "", "main": `{"startDeps": ["proxy"]}`},
			notes: []string{"proxy gets no stop dependencies"},
		},
		{
			name:  "nothing asked: unchanged",
			in:    job(nil),
			specs: map[string]string{"proxy": "", "main": "", "log": ""},
		},
		{
			name:  "inject: false",
			in:    job(map[string]string{AnnotationInject: "false"}),
			opts:  Options{Sidecars: []string{"proxy"}},
			specs: map[string]string{"proxy": "", "main": "", "log": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Template(tt.in, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tt.specs {
				if got := specOf(t, res.Template.Spec, name); got != want {
					t.Errorf("%s: spec %s, want %s", name, got, want)
				}
			}
			for _, n := range tt.notes {
				if !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, n) }) {
					t.Errorf("notes %q lack %q", res.Notes, n)
				}
			}
			coordinated := false
			for _, w := range tt.specs {
				coordinated = coordinated || w != ""
			}
			if res.Changed != coordinated {
				t.Errorf("Changed %v, want %v", res.Changed, coordinated)
			}
			if coordinated {
				checkWired(t, res.Template)
			}
			again, err := Template(res.Template, tt.opts)
			if err != nil || again.Changed {
				t.Errorf("second injection: changed %v, err %v", again.Changed, err)
			}
		})
	}
}

// checkWired checks the pod-level wiring: the installer first, both volumes, mounts and the
// command of every container with a spec.
func checkWired(t *testing.T, tp corev1.PodTemplateSpec) {
	t.Helper()
	ps := tp.Spec
	if len(ps.InitContainers) == 0 || ps.InitContainers[0].Name != InstallerName || !slices.Equal(ps.InitContainers[0].Args, []string{MountPath}) {
		t.Errorf("no installer first: %+v", ps.InitContainers)
	}
	var vols []string
	for _, v := range ps.Volumes {
		vols = append(vols, v.Name)
	}
	if !slices.Equal(vols, []string{VolumeName, PodinfoVolume}) {
		t.Errorf("volumes %v", vols)
	}
	for _, c := range Containers(&ps) {
		if SpecEnv(c) == nil {
			continue
		}
		if !IsWired(c) {
			t.Errorf("%s has a spec but runs %v", c.Name, c.Command)
		}
		if len(c.VolumeMounts) != 2 {
			t.Errorf("%s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
}

func TestCommand(t *testing.T) {
	images := func(c *corev1.Container) (ImageConfig, bool) {
		switch c.Image {
		case "entrypoint-and-cmd":
			return ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"serve"}}, true
		case "cmd-only":
			return ImageConfig{Cmd: []string{"sh"}}, true
		case "nothing":
			return ImageConfig{}, true
		}
		return ImageConfig{}, false
	}
	tests := []struct {
		name              string
		image             string
		command, args     []string
		wantCmd, wantArgs []string
		wantErr           string
	}{
		{"command replaces entrypoint and cmd", "unknown", []string{"/app", "-v"}, []string{"x"}, []string{BinaryPath, "/app", "-v"}, []string{"x"}, ""},
		{"already wired", "unknown", []string{BinaryPath, "/app"}, nil, []string{BinaryPath, "/app"}, nil, ""},
		{"args keep the entrypoint", "entrypoint-and-cmd", nil, []string{"run"}, []string{BinaryPath, "/entry", "-x"}, []string{"run"}, ""},
		{"neither: entrypoint and cmd", "entrypoint-and-cmd", nil, nil, []string{BinaryPath, "/entry", "-x"}, []string{"serve"}, ""},
		{"cmd only", "cmd-only", nil, nil, []string{BinaryPath}, []string{"sh"}, ""},
		{"image runs nothing", "nothing", nil, nil, nil, nil, "neither ENTRYPOINT nor CMD"},
		{"args starting with -", "cmd-only", nil, []string{"-c"}, nil, nil, "cannot start with '-'"},
		{"unknown image", "unknown", nil, []string{"x"}, nil, nil, "image config needed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := corev1.Container{Name: "main", Image: tt.image, Command: tt.command, Args: tt.args}
			err := wireCommand(&c, images)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Command, tt.wantCmd) || !slices.Equal(c.Args, tt.wantArgs) {
				t.Errorf("command %q args %q, want %q %q", c.Command, c.Args, tt.wantCmd, tt.wantArgs)
			}
		})
	}
}

func TestNeedImageConfig(t *testing.T) {
	in := tmpl(map[string]string{AnnotationSidecars: "proxy"}, corev1.RestartPolicyNever, nil,
		ctr("proxy", nil, nil), ctr("main", nil, []string{"x"}), ctr("other", []string{"/x"}, nil))
	_, err := Template(in, Options{})
	var need *NeedImageConfigError
	if !errors.As(err, &need) || !slices.Equal(need.Containers, []string{"proxy", "main"}) {
		t.Fatalf("error %v, want one naming proxy and main", err)
	}
}

func TestTemplateErrors(t *testing.T) {
	job := func(ann map[string]string, init ...corev1.Container) corev1.PodTemplateSpec {
		return tmpl(ann, corev1.RestartPolicyNever, init, ctr("proxy", []string{"/proxy"}, nil), ctr("main", []string{"/app"}, nil))
	}
	withEnv := func(tp corev1.PodTemplateSpec, e corev1.EnvVar) corev1.PodTemplateSpec {
		tp.Spec.Containers[1].Env = append(tp.Spec.Containers[1].Env, e)
		return tp
	}
	tests := []struct {
		name string
		in   corev1.PodTemplateSpec
		opts Options
		want string
	}{
		{"unknown sidecar", job(nil), Options{Sidecars: []string{"db"}}, `--sidecar names "db", which is not a container of the pod (containers: proxy, main)`},
		{"unknown in annotation", job(map[string]string{AnnotationSidecars: "db"}), Options{}, `annotation koordinator.dev/sidecars names "db"`},
		{"every container a sidecar", job(nil), Options{Sidecars: []string{"proxy", "main"}}, "no main container is left"},
		{"every container a main", job(nil), Options{Mains: []string{"proxy", "main"}}, "no sidecar to coordinate"},
		{"both roles", job(nil), Options{Mains: []string{"main"}, Sidecars: []string{"main"}}, "both as a sidecar and as a main"},
		{"bad stop delay", job(nil), Options{Sidecars: []string{"proxy"}, StopDelay: "soon"}, `--stop-delay: KOORDINATOR_SPEC: "stopDelay" is "soon"`},
		{"bad spec annotation", job(map[string]string{SpecAnnotationPrefix + "main": `{"startdeps":["proxy"]}`}), Options{}, `did you mean "startDeps"?`},
		{"spec annotation for no container", job(map[string]string{SpecAnnotationPrefix + "db": `{}`}), Options{}, `"db" is not a container`},
		{"spec annotation cycle", job(map[string]string{SpecAnnotationPrefix + "main": `{"startDeps":["proxy"]}`, SpecAnnotationPrefix + "proxy": `{"startDeps":["main"]}`}), Options{}, "cycle"},
		{"stop dep on a native sidecar", job(map[string]string{SpecAnnotationPrefix + "main": `{"stopDeps":["mesh"]}`}, native("mesh")), Options{}, "native sidecar"},
		{"typo env", withEnv(job(nil), corev1.EnvVar{Name: "KOOORDINATOR_SPEC", Value: "{}"}), Options{Sidecars: []string{"proxy"}}, "three O's"},
		{"spec from valueFrom", withEnv(job(nil), corev1.EnvVar{Name: "KOORDINATOR_SPEC", ValueFrom: &corev1.EnvVarSource{}}), Options{Sidecars: []string{"proxy"}}, "valueFrom"},
		{"inject annotation typo", job(map[string]string{AnnotationInject: "no"}), Options{}, `write "true" or "false"`},
		{"name clash", tmpl(nil, corev1.RestartPolicyNever, nil, ctr("koordinator", []string{"/x"}, nil), ctr("main", []string{"/app"}, nil)), Options{Sidecars: []string{"koordinator"}}, "does not install koordinator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Template(tt.in, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMergeKeepsOtherKeys(t *testing.T) {
	c := ctr("proxy", []string{BinaryPath, "/proxy"}, nil)
	c.Env = []corev1.EnvVar{{Name: "KOORDINATOR_SPEC", Value: `{"stopSignal":"SIGINT","stopDeps":["old"]}`}}
	if err := setSpec(&c, want{owned: []member{{"stopDeps", jsonList([]string{"main"})}}}); err != nil {
		t.Fatal(err)
	}
	if got := c.Env[0].Value; got != `{"stopSignal": "SIGINT", "stopDeps": ["main"]}` {
		t.Errorf("got %s", got)
	}
	// The same meaning in other words is kept as written.
	c.Env[0].Value = `{ "stopDeps" : ["main"], "stopSignal": "INT" }`
	if err := setSpec(&c, want{owned: []member{{"stopDeps", jsonList([]string{"main"})}}}); err != nil {
		t.Fatal(err)
	}
	if got := c.Env[0].Value; got != `{ "stopDeps" : ["main"], "stopSignal": "INT" }` {
		t.Errorf("rewritten: %s", got)
	}
}

func TestServiceAccount(t *testing.T) {
	in := tmpl(map[string]string{AnnotationSidecars: "proxy"}, corev1.RestartPolicyNever, nil,
		ctr("proxy", []string{"/proxy"}, nil), ctr("main", []string{"/app"}, nil))
	res, err := Template(in, Options{ServiceAccount: "koordinator"})
	if err != nil || res.Template.Spec.ServiceAccountName != "koordinator" {
		t.Fatalf("serviceAccountName %q, err %v", res.Template.Spec.ServiceAccountName, err)
	}
	in.Spec.ServiceAccountName = "app"
	res, err = Template(in, Options{ServiceAccount: "koordinator"})
	if err != nil || res.Template.Spec.ServiceAccountName != "app" || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "runs as ServiceAccount app, not koordinator") {
		t.Fatalf("serviceAccountName %q, notes %q, err %v", res.Template.Spec.ServiceAccountName, res.Notes, err)
	}
	// Nothing to coordinate: nothing set.
	in.Annotations = nil
	if res, _ = Template(in, Options{ServiceAccount: "koordinator"}); res.Changed {
		t.Error("a template with nothing to coordinate was changed")
	}
}
