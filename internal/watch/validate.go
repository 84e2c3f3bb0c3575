package watch

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// specEnv is the environment variable that carries a wrapper's spec.
const specEnv = "KOORDINATOR_SPEC"

// ContainerNames lists every container of the pod spec: init containers (spec order) then
// regular ones (spec order). Ephemeral containers are not part of it.
func ContainerNames(pod *corev1.Pod) []string {
	if pod == nil {
		return nil
	}
	names := make([]string, 0, len(pod.Spec.InitContainers)+len(pod.Spec.Containers))
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

// allContainers lists pointers to the pod's init and regular containers, in ContainerNames order.
func allContainers(pod *corev1.Pod) []*corev1.Container {
	var cs []*corev1.Container
	for i := range pod.Spec.InitContainers {
		cs = append(cs, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		cs = append(cs, &pod.Spec.Containers[i])
	}
	return cs
}

// FindSelf finds which container of the pod runs this very process: the one container whose
// command+args equals argv (as the wrapper saw it in os.Args) and whose literal env
// KOORDINATOR_SPEC value equals rawSpec (both absent counts as equal). ok=false if zero or
// several match.
//
// What the pod spec cannot show is matched loosely, the uniqueness requirement guarding:
//   - $(VAR) references in command, args and the env value are expanded by the kubelet from the
//     container's whole environment, so each matches any text ($$ is a literal $);
//   - a container without command runs its image's ENTRYPOINT, which the pod spec does not
//     show: its args must be the tail of argv (all of argv when the entrypoint execs its
//     arguments), and a container with neither command nor args never matches;
//   - a KOORDINATOR_SPEC taken from a ConfigMap or Secret (valueFrom, or envFrom when no literal
//     entry exists) cannot be compared and does not rule the container out.
func FindSelf(pod *corev1.Pod, argv []string, rawSpec string) (name string, ok bool) {
	if pod == nil || len(argv) == 0 {
		return "", false
	}
	found := 0
	for _, c := range allContainers(pod) {
		if argvMatches(c, argv) && specMatches(c, rawSpec) {
			name = c.Name
			found++
		}
	}
	if found != 1 {
		return "", false
	}
	return name, true
}

func argvMatches(c *corev1.Container, argv []string) bool {
	want := c.Args
	got := argv
	if len(c.Command) > 0 {
		want = append(slices.Clip(c.Command), c.Args...)
	} else {
		if len(c.Args) == 0 || len(argv) < len(c.Args) {
			return false
		}
		got = argv[len(argv)-len(c.Args):]
	}
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		if !expandedMatches(want[i], got[i]) {
			return false
		}
	}
	return true
}

// specMatches compares the container's KOORDINATOR_SPEC with the one this process received.
// The last entry of that name wins, as in the kubelet.
func specMatches(c *corev1.Container, rawSpec string) bool {
	var entry *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == specEnv {
			entry = &c.Env[i]
		}
	}
	switch {
	case entry == nil && len(c.EnvFrom) > 0:
		return true
	case entry == nil:
		return rawSpec == ""
	case entry.ValueFrom != nil:
		return true
	}
	return expandedMatches(entry.Value, rawSpec)
}

// expandedMatches reports whether got can be what the kubelet made of the pod spec's text want:
// $(VAR) may have become anything (it stays as written when VAR is undefined), $$ became $.
func expandedMatches(want, got string) bool {
	if want == got {
		return true
	}
	if !strings.Contains(want, "$") {
		return false
	}
	var b strings.Builder
	b.WriteString(`^`)
	lit := 0 // start of the literal text not yet written
	for i := 0; i < len(want); i++ {
		if want[i] != '$' || i+1 == len(want) {
			continue
		}
		switch want[i+1] {
		case '$':
			b.WriteString(regexp.QuoteMeta(want[lit:i]) + regexp.QuoteMeta("$"))
			i++
			lit = i + 1
		case '(':
			if end := strings.IndexByte(want[i+2:], ')'); end >= 0 {
				b.WriteString(regexp.QuoteMeta(want[lit:i]) + `(?s:.*)`)
				i += 2 + end
				lit = i + 1
			}
		}
	}
	b.WriteString(regexp.QuoteMeta(want[lit:]) + `$`)
	re, err := regexp.Compile(b.String())
	return err == nil && re.MatchString(got)
}

// DepError is a dependency that does not fit the pod: one line naming the problem and the pod's
// real container names.
type DepError struct{ Msg string }

func (e *DepError) Error() string { return e.Msg }

// ValidateDeps checks the spec's dependencies against the pod spec: every name must be a
// container of the pod, none may be self (when self != ""), no stop dependency may be a native
// sidecar unless self is one too (self unknown counts as not), and no start-dependency cycle may be
// reachable from self through the specs other containers carry as literal KOORDINATOR_SPEC env
// values (specs that fail to parse, and specs from ConfigMaps or Secrets, are not visible and
// count as having no start dependencies). The first problem found is returned as a *DepError,
// or nil.
func ValidateDeps(pod *corev1.Pod, self string, startDeps, stopDeps []string) error {
	if pod == nil {
		return nil
	}
	names := ContainerNames(pod)
	where := fmt.Sprintf("pod %s/%s (containers: %s)", pod.Namespace, pod.Name, strings.Join(names, ", "))
	for _, set := range []struct {
		what string
		deps []string
	}{{"start", startDeps}, {"stop", stopDeps}} {
		for _, d := range set.deps {
			if !slices.Contains(names, d) {
				return &DepError{Msg: fmt.Sprintf("%s dependency %q is not a container of %s", set.what, d, where)}
			}
			if self != "" && d == self {
				return &DepError{Msg: fmt.Sprintf("%s dependency %q is this container itself, in %s", set.what, d, where)}
			}
		}
	}
	// The kubelet stops native sidecars only after every regular container has exited, so a
	// regular (or plain init) container that waits for one to exit waits forever.
	_, selfKind, _ := container(pod, self)
	for _, d := range stopDeps {
		if _, k, _ := container(pod, d); k == sidecar && selfKind != sidecar {
			return &DepError{Msg: fmt.Sprintf("stop dependency %q is a native sidecar (an init container with restartPolicy: Always), which the kubelet stops only after every regular container has exited: this container would wait for it forever; remove it from stopDeps (it can stay a start dependency), in %s", d, where)}
		}
	}
	if cycle := startCycle(pod, self, startDeps); cycle != nil {
		return &DepError{Msg: fmt.Sprintf("start dependencies form a cycle %s, in %s", strings.Join(cycle, " -> "), where)}
	}
	return nil
}

// startCycle looks for a start-dependency cycle reachable from self (or, when self is unknown,
// from its start dependencies) and returns it as a path that ends where it starts, or nil.
// self's edges are startDeps; every other container's come from its literal spec.
func startCycle(pod *corev1.Pod, self string, startDeps []string) []string {
	edges := map[string][]string{}
	for _, c := range allContainers(pod) {
		if c.Name != self {
			edges[c.Name] = literalStartDeps(c)
		}
	}
	roots := startDeps
	if self != "" {
		edges[self] = startDeps
		roots = []string{self}
	}

	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(n string) []string
	visit = func(n string) []string {
		switch state[n] {
		case onPath:
			i := slices.Index(path, n)
			return append(slices.Clone(path[i:]), n)
		case done:
			return nil
		}
		state[n] = onPath
		path = append(path, n)
		for _, next := range edges[n] {
			if cycle := visit(next); cycle != nil {
				return cycle
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, r := range roots {
		if cycle := visit(r); cycle != nil {
			return cycle
		}
	}
	return nil
}

// literalStartDeps parses the container's literal KOORDINATOR_SPEC (the last entry wins) and
// returns its start dependencies; nil when there is none, it is not literal, or it is invalid.
func literalStartDeps(c *corev1.Container) []string {
	var entry *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == specEnv {
			entry = &c.Env[i]
		}
	}
	if entry == nil || entry.ValueFrom != nil || strings.TrimSpace(entry.Value) == "" {
		return nil
	}
	s, err := spec.Parse([]byte(entry.Value))
	if err != nil {
		return nil
	}
	return s.StartDeps
}
