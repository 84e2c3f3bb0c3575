package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

// want is the spec a coordinated container should end up with.
type want struct {
	full  string   // a spec annotation's text, used as written; "" for the short form
	owned []member // the short form: the keys inject owns, merged into an existing spec
}

// member is one key of a spec object and its JSON value.
type member struct {
	key   string
	value json.RawMessage
}

type plan struct {
	wants map[string]want // by container name
	notes []string
}

// makePlan decides which containers get which spec, from the annotations, else the options.
func makePlan(ps *corev1.PodSpec, ann map[string]string, opts Options) (plan, error) {
	p := plan{wants: map[string]want{}}
	sidecars, mains := opts.Sidecars, opts.Mains
	sideSrc, mainSrc := "--sidecar", "--main"
	_, annS := ann[AnnotationSidecars]
	_, annM := ann[AnnotationMains]
	if annS || annM {
		sidecars, mains = splitNames(ann[AnnotationSidecars]), splitNames(ann[AnnotationMains])
		sideSrc, mainSrc = "annotation "+AnnotationSidecars, "annotation "+AnnotationMains
	}
	stopDelay, delaySrc := opts.StopDelay, "--stop-delay"
	if v, ok := ann[AnnotationStopDelay]; ok {
		stopDelay, delaySrc = v, "annotation "+AnnotationStopDelay
	}
	startTimeout, timeoutSrc := opts.StartTimeout, "--start-timeout"
	if v, ok := ann[AnnotationStartTimeout]; ok {
		startTimeout, timeoutSrc = v, "annotation "+AnnotationStartTimeout
	}
	var durations []member
	for _, d := range []struct{ key, value, src string }{{"stopDelay", stopDelay, delaySrc}, {"startTimeout", startTimeout, timeoutSrc}} {
		if d.value == "" {
			continue
		}
		m := member{d.key, jsonString(d.value)}
		if _, err := spec.Parse([]byte(format([]member{m}))); err != nil {
			return p, fmt.Errorf("%s: %w", d.src, err)
		}
		durations = append(durations, m)
	}

	all := names(ps)
	var regular []string
	for _, c := range ps.Containers {
		regular = append(regular, c.Name)
	}
	native := map[string]bool{}
	for i := range ps.InitContainers {
		if IsNativeSidecar(&ps.InitContainers[i]) {
			native[ps.InitContainers[i].Name] = true
		}
	}
	for _, s := range sidecars {
		if !slices.Contains(all, s) {
			return p, fmt.Errorf("%s names %q, which is not a container of the pod (containers: %s)", sideSrc, s, strings.Join(all, ", "))
		}
		if !slices.Contains(regular, s) && !native[s] {
			return p, fmt.Errorf("%s names %q, an init container that runs to completion; a sidecar is a regular container or a native sidecar (restartPolicy: Always)", sideSrc, s)
		}
	}
	for _, m := range mains {
		if !slices.Contains(all, m) {
			return p, fmt.Errorf("%s names %q, which is not a container of the pod (containers: %s)", mainSrc, m, strings.Join(all, ", "))
		}
		if !slices.Contains(regular, m) {
			return p, fmt.Errorf("%s names %q, an init container; a main is a regular container", mainSrc, m)
		}
		if slices.Contains(sidecars, m) {
			return p, fmt.Errorf("%q is named both as a sidecar and as a main; pick one", m)
		}
	}
	switch {
	case len(sidecars) > 0 && len(mains) == 0:
		for _, c := range regular {
			if !slices.Contains(sidecars, c) {
				mains = append(mains, c)
			}
		}
		if len(mains) == 0 {
			return p, fmt.Errorf("%s names every regular container: no main container is left to run", sideSrc)
		}
	case len(mains) > 0 && len(sidecars) == 0:
		for _, c := range regular {
			if !slices.Contains(mains, c) {
				sidecars = append(sidecars, c)
			}
		}
		if len(sidecars) == 0 {
			return p, fmt.Errorf("%s names every regular container: there is no sidecar to coordinate", mainSrc)
		}
	}

	// restartPolicy Always (unset, or any workload but a Job): a main never exits for good while
	// the pod runs, so a stop dependency on it would keep the sidecar to the end anyway.
	always := ps.RestartPolicy == "" || ps.RestartPolicy == corev1.RestartPolicyAlways
	startDeps := jsonList(sidecars)
	stopDeps := jsonList(mains)
	for _, name := range sidecars {
		switch {
		case native[name]:
			p.notes = append(p.notes, fmt.Sprintf("%s is a native sidecar (an init container with restartPolicy: Always): it is a start dependency only; the kubelet stops it after the other containers", name))
		case always:
			p.notes = append(p.notes, fmt.Sprintf("%s gets no stop dependencies: the pod's restartPolicy is Always, so its mains never exit for good", name))
		default:
			owned := []member{{"stopDeps", stopDeps}}
			for _, d := range durations {
				if d.key == "stopDelay" {
					owned = append(owned, d)
				}
			}
			p.wants[name] = want{owned: owned}
		}
	}
	for _, name := range mains {
		owned := []member{{"startDeps", startDeps}}
		for _, d := range durations {
			if d.key == "startTimeout" {
				owned = append(owned, d)
			}
		}
		p.wants[name] = want{owned: owned}
	}

	keys := make([]string, 0, len(ann))
	for k := range ann {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name, ok := strings.CutPrefix(k, SpecAnnotationPrefix)
		if !ok {
			continue
		}
		if !slices.Contains(all, name) {
			return p, fmt.Errorf("annotation %s: %q is not a container of the pod (containers: %s)", k, name, strings.Join(all, ", "))
		}
		if _, err := spec.Parse([]byte(ann[k])); err != nil {
			return p, fmt.Errorf("annotation %s: %w", k, err)
		}
		p.wants[name] = want{full: ann[k]}
	}
	return p, nil
}

func names(ps *corev1.PodSpec) []string {
	var ns []string
	for _, c := range Containers(ps) {
		ns = append(ns, c.Name)
	}
	return ns
}

// splitNames reads a comma-separated list, ignoring spaces and empty items.
func splitNames(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// setSpec gives the container its KOORDINATOR_SPEC. A literal spec already there is kept, text
// and all, when it means the same as the wanted one; the short form otherwise replaces only the
// keys it owns, keeping the user's other keys and their order.
func setSpec(c *corev1.Container, w want) error {
	for _, e := range c.Env {
		if e.Name == spec.TypoEnvVar {
			return fmt.Errorf("it sets %s (three O's), which koordinator does not read: rename it to %s", spec.TypoEnvVar, spec.EnvVar)
		}
	}
	entry := SpecEnv(c)
	if entry != nil && entry.ValueFrom != nil {
		return fmt.Errorf("its %s comes from valueFrom, which inject cannot read: remove it, or give the whole spec in annotation %s%s", spec.EnvVar, SpecAnnotationPrefix, c.Name)
	}
	old := ""
	if entry != nil {
		old = entry.Value
	}
	text := w.full
	if text == "" {
		var err error
		if text, err = merge(old, w.owned); err != nil {
			return err
		}
	}
	wanted, err := spec.Parse([]byte(text))
	if err != nil {
		return err
	}
	if entry != nil {
		if had, err := spec.Parse([]byte(old)); err == nil && reflect.DeepEqual(had, wanted) {
			return nil
		}
		entry.Value = text
		return nil
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: spec.EnvVar, Value: text})
	return nil
}

// merge writes the spec old with the owned keys set: old's other keys keep their place and text.
func merge(old string, owned []member) (string, error) {
	var members []member
	if strings.TrimSpace(old) != "" {
		var err error
		if members, err = readObject(old); err != nil {
			// The wrapper's own message says what is wrong with it.
			if _, perr := spec.Parse([]byte(old)); perr != nil {
				return "", perr
			}
			return "", err
		}
	}
	for _, o := range owned {
		i := slices.IndexFunc(members, func(m member) bool { return m.key == o.key })
		if i < 0 {
			members = append(members, o)
		} else {
			members[i].value = o.value
		}
	}
	return format(members), nil
}

// readObject splits a JSON object into its members, in order.
func readObject(text string) ([]member, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%s is not a JSON object", spec.EnvVar)
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", spec.EnvVar, err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("reading %s: %w", spec.EnvVar, err)
		}
		ms = append(ms, member{tok.(string), v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", spec.EnvVar, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s has text after its JSON object", spec.EnvVar)
	}
	return ms, nil
}

// format writes members the way deploy/job-example.yaml does: {"stopDeps": ["main"], "stopDelay": "1s"}.
func format(ms []member) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Write(jsonString(m.key))
		b.WriteString(": ")
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.String()
}

func jsonString(s string) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func jsonList(names []string) json.RawMessage {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = string(jsonString(n))
	}
	return json.RawMessage("[" + strings.Join(parts, ", ") + "]")
}
