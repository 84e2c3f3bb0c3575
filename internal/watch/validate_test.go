package watch

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func cmd(argv ...string) ctrOpt { return func(c *corev1.Container) { c.Command = argv } }

func args(argv ...string) ctrOpt { return func(c *corev1.Container) { c.Args = argv } }

func env(name, value string) ctrOpt {
	return func(c *corev1.Container) { c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value}) }
}

func specFrom(c *corev1.Container) {
	c.Env = append(c.Env, corev1.EnvVar{Name: specEnv, ValueFrom: &corev1.EnvVarSource{
		ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "koordinator"}, Key: "spec",
		},
	}})
}

func withSpec(s string) ctrOpt { return env(specEnv, s) }

func TestContainerNames(t *testing.T) {
	pod := newPod(corev1.RestartPolicyNever,
		inits(ctr("install"), ctr("proxy", sidecarPolicy)),
		regulars(ctr("main"), ctr("report")))
	if got, want := ContainerNames(pod), []string{"install", "proxy", "main", "report"}; !slices.Equal(got, want) {
		t.Errorf("ContainerNames = %q, want %q", got, want)
	}
	if got := ContainerNames(nil); got != nil {
		t.Errorf("ContainerNames(nil) = %q, want nil", got)
	}
	if got := ContainerNames(newPod(corev1.RestartPolicyNever)); len(got) != 0 {
		t.Errorf("ContainerNames(no containers) = %q, want none", got)
	}
}

func TestFindSelf(t *testing.T) {
	const (
		bin       = "/koordinator/koordinator"
		proxySpec = `{"stopDeps":["main"]}`
		mainSpec  = `{"startDeps":["cloud-sql-proxy"]}`
	)
	seed := func(opts ...podOpt) *corev1.Pod {
		return newPod(corev1.RestartPolicyNever, append([]podOpt{
			inits(
				ctr("install", args("/koordinator")),
				ctr("cloud-sql-proxy", sidecarPolicy, cmd(bin, "/cloud-sql-proxy"), args("--port", "5432", "proj:region:db"), withSpec(proxySpec)),
			),
			regulars(ctr("main", cmd(bin, "/app/run"), args("--once"), withSpec(mainSpec))),
		}, opts...)...)
	}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		argv    []string
		rawSpec string
		want    string
		wantOK  bool
	}{
		{"regular container", seed(), []string{bin, "/app/run", "--once"}, mainSpec, "main", true},
		{"native sidecar", seed(), []string{bin, "/cloud-sql-proxy", "--port", "5432", "proj:region:db"}, proxySpec, "cloud-sql-proxy", true},
		{"argv differs", seed(), []string{bin, "/app/run"}, mainSpec, "", false},
		{"spec differs", seed(), []string{bin, "/app/run", "--once"}, `{"startDeps":[]}`, "", false},
		{"spec missing here, present in pod", seed(), []string{bin, "/app/run", "--once"}, "", "", false},
		{"nil pod", nil, []string{bin}, "", "", false},
		{"empty argv", seed(), nil, "", "", false},
		{"both without spec", newPod(corev1.RestartPolicyNever, regulars(ctr("a", cmd(bin, "/x")), ctr("b", cmd(bin, "/y")))), []string{bin, "/y"}, "", "b", true},
		{"spec here, none in pod", newPod(corev1.RestartPolicyNever, regulars(ctr("a", cmd(bin, "/x")))), []string{bin, "/x"}, mainSpec, "", false},
		{"several match", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/x"), withSpec(mainSpec)),
			ctr("b", cmd(bin, "/x"), withSpec(mainSpec)))), []string{bin, "/x"}, mainSpec, "", false},
		{"same argv, the spec tells them apart", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/x"), withSpec(mainSpec)),
			ctr("b", cmd(bin, "/x"), withSpec(proxySpec)))), []string{bin, "/x"}, proxySpec, "b", true},
		{"last env entry wins", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/x"), withSpec(proxySpec), withSpec(mainSpec)))), []string{bin, "/x"}, mainSpec, "a", true},
		{"spec from a ConfigMap cannot rule out", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/x"), specFrom), ctr("b", cmd(bin, "/y"), specFrom))), []string{bin, "/x"}, mainSpec, "a", true},
		{"spec possibly from envFrom", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/x"), func(c *corev1.Container) {
				c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "k"}}}}
			}))), []string{bin, "/x"}, mainSpec, "a", true},
		{"$(VAR) expanded by the kubelet", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/app"), args("--db=$(DB_HOST):5432", "$$(literal)"), env("DB_HOST", "10.0.0.7")))),
			[]string{bin, "/app", "--db=10.0.0.7:5432", "$(literal)"}, "", "a", true},
		{"$(VAR) left as written when undefined", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/app"), args("$(NOPE)")))), []string{bin, "/app", "$(NOPE)"}, "", "a", true},
		{"$(VAR) does not match across elements", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/app"), args("$(X)")))), []string{bin, "/app", "1", "2"}, "", "", false},
		{"non-ASCII text around $(VAR)", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", cmd(bin, "/app"), args("grüße-$(WHO)-ok")))), []string{bin, "/app", "grüße-welt-ok"}, "", "a", true},
		{"no command: args are argv's tail after the image entrypoint", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", args("/app", "--once")))), []string{bin, "/app", "--once"}, "", "a", true},
		{"no command: entrypoint that execs its args", newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", args(bin, "/app")))), []string{bin, "/app"}, "", "a", true},
		{"no command, no args never matches", newPod(corev1.RestartPolicyNever, regulars(ctr("a"))), []string{bin}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			got, ok := FindSelf(tt.pod, tt.argv, tt.rawSpec)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("FindSelf = (%q, %v), want (%q, %v)", got, ok, tt.want, tt.wantOK)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("FindSelf modified the pod")
			}
		})
	}
}

func TestValidateDeps(t *testing.T) {
	seed := newPod(corev1.RestartPolicyNever,
		inits(ctr("cloud-sql-proxy", sidecarPolicy, withSpec(`{"stopDeps":["main"]}`))),
		regulars(ctr("main", withSpec(`{"startDeps":["cloud-sql-proxy"]}`))))
	chain := func(a, b, c string) *corev1.Pod { // a, b, c with literal specs: b -> (b's deps), c -> (c's deps)
		return newPod(corev1.RestartPolicyNever, regulars(
			ctr("a", withSpec(a)), ctr("b", withSpec(b)), ctr("c", withSpec(c))))
	}
	tests := []struct {
		name    string
		pod     *corev1.Pod
		self    string
		start   []string
		stop    []string
		wantMsg string // "" = no error
	}{
		{"valid seed, main", seed, "main", []string{"cloud-sql-proxy"}, nil, ""},
		{"valid seed, proxy", seed, "cloud-sql-proxy", nil, []string{"main"}, ""},
		{"no deps", seed, "main", nil, nil, ""},
		{"nil pod", nil, "main", []string{"x"}, nil, ""},
		{"unknown start dep", seed, "main", []string{"proxi"}, nil,
			`start dependency "proxi" is not a container of pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"unknown stop dep", seed, "cloud-sql-proxy", nil, []string{"mian"},
			`stop dependency "mian" is not a container of pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"unknown dep, self unknown", seed, "", []string{"proxi"}, nil,
			`start dependency "proxi" is not a container of pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"self as start dep", seed, "main", []string{"main"}, nil,
			`start dependency "main" is this container itself, in pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"self as stop dep", seed, "cloud-sql-proxy", nil, []string{"cloud-sql-proxy"},
			`stop dependency "cloud-sql-proxy" is this container itself, in pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"self unknown: no self check", seed, "", nil, []string{"main"}, ""},
		{"cycle a -> b -> a", chain("", `{"startDeps":["a"]}`, ""), "a", []string{"b"}, nil,
			`start dependencies form a cycle a -> b -> a, in pod default/job-x (containers: a, b, c)`},
		{"cycle a -> b -> c -> a", chain("", `{"startDeps":["c"]}`, `{"startDeps":["a"]}`), "a", []string{"b"}, nil,
			`start dependencies form a cycle a -> b -> c -> a, in pod default/job-x (containers: a, b, c)`},
		{"cycle b -> c -> b reachable from a", chain("", `{"startDeps":["c"]}`, `{"startDeps":["b"]}`), "a", []string{"b"}, nil,
			`start dependencies form a cycle b -> c -> b, in pod default/job-x (containers: a, b, c)`},
		{"cycle among deps, self unknown", chain("", `{"startDeps":["c"]}`, `{"startDeps":["b"]}`), "", []string{"b"}, nil,
			`start dependencies form a cycle b -> c -> b, in pod default/job-x (containers: a, b, c)`},
		{"self's literal spec is overridden by the given deps", chain(`{"startDeps":["b"]}`, `{"startDeps":["a"]}`, ""), "a", nil, []string{"b"}, ""},
		{"cycle not reachable from self", chain("", `{"startDeps":["c"]}`, `{"startDeps":["b"]}`), "a", nil, []string{"b"}, ""},
		{"stop deps do not make cycles", chain("", `{"stopDeps":["a"]}`, ""), "a", []string{"b"}, []string{"b"}, ""},
		{"diamond is no cycle", chain("", `{"startDeps":["c"]}`, ""), "a", []string{"b", "c"}, nil, ""},
		{"spec from a ConfigMap is not visible", newPod(corev1.RestartPolicyNever, regulars(ctr("a"), ctr("b", specFrom))), "a", []string{"b"}, nil, ""},
		{"unparsable spec is ignored", chain("", `{"startDeps":["a"`, ""), "a", []string{"b"}, nil, ""},
		{"stop dep on a native sidecar", seed, "main", nil, []string{"cloud-sql-proxy"},
			`stop dependency "cloud-sql-proxy" is a native sidecar (an init container with restartPolicy: Always), which the kubelet stops only after every regular container has exited: this container would wait for it forever; remove it from stopDeps (it can stay a start dependency), in pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"stop dep on a native sidecar, self unknown", seed, "", nil, []string{"cloud-sql-proxy"},
			`stop dependency "cloud-sql-proxy" is a native sidecar (an init container with restartPolicy: Always), which the kubelet stops only after every regular container has exited: this container would wait for it forever; remove it from stopDeps (it can stay a start dependency), in pod default/job-x (containers: cloud-sql-proxy, main)`},
		{"stop dep on a native sidecar, from a plain init container", newPod(corev1.RestartPolicyNever,
			inits(ctr("mesh", sidecarPolicy), ctr("migrate")), regulars(ctr("main"))), "migrate", nil, []string{"mesh"},
			`stop dependency "mesh" is a native sidecar (an init container with restartPolicy: Always), which the kubelet stops only after every regular container has exited: this container would wait for it forever; remove it from stopDeps (it can stay a start dependency), in pod default/job-x (containers: mesh, migrate, main)`},
		{"a native sidecar may stop after another", newPod(corev1.RestartPolicyNever,
			inits(ctr("mesh", sidecarPolicy), ctr("logs", sidecarPolicy)), regulars(ctr("main"))), "mesh", nil, []string{"logs"}, ""},
		{"other containers' unknown deps are not ours to report", chain("", `{"startDeps":["zzz"]}`, ""), "a", []string{"b"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			err := ValidateDeps(tt.pod, tt.self, tt.start, tt.stop)
			if !reflect.DeepEqual(before, tt.pod) {
				t.Error("ValidateDeps modified the pod")
			}
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("ValidateDeps = %v, want nil", err)
				}
				return
			}
			var de *DepError
			if !errors.As(err, &de) {
				t.Fatalf("ValidateDeps = %#v, want a *DepError", err)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("ValidateDeps =\n  %s\nwant\n  %s", err, tt.wantMsg)
			}
		})
	}
}
