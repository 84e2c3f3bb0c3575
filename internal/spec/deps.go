package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LocalDep is a start dependency checked from inside the pod, without the API.
type LocalDep struct {
	Kind   string // "tcp", "http" or "file"
	Target string // host:port, a URL, or an absolute path
}

// The kinds of LocalDep.
const (
	TCP  = "tcp"  // a connection to Target is accepted
	HTTP = "http" // a GET of Target answers 2xx
	File = "file" // the file Target exists
)

func (d LocalDep) String() string { return d.Kind + " " + d.Target }

// dependency is one item of startDeps or stopDeps: a container (optional or not) or a local check.
type dependency struct {
	name     string
	optional bool
	local    *LocalDep
}

// id is what makes two items the same dependency: the container's name, or the local check.
func (d dependency) id() string {
	if d.local != nil {
		return d.local.String()
	}
	return d.name
}

// depKeys are the keys a dependency object may have.
var depKeys = []string{"name", "optional", TCP, HTTP, File}

const depForms = `a container name like "proxy", {"name":"proxy","optional":true}, {"tcp":"127.0.0.1:5432"}, {"http":"http://127.0.0.1:15021/healthz/ready"} or {"file":"/shared/ready"}`

// decodeDeps reads startDeps or stopDeps (local checks only when local is true). Names keep their
// order and appear once.
func decodeDeps(key string, raw json.RawMessage, local bool) ([]dependency, error) {
	if raw[0] != '[' {
		hint := ""
		if raw[0] == '"' {
			hint = fmt.Sprintf(" (write [%s])", truncate(string(raw)))
		}
		return nil, errorf(key, "%q must be a list of container names like [\"main\"], not %s%s", key, valueKind(raw), hint)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items) // the decoder has checked the syntax
	deps := make([]dependency, 0, len(items))
	for i, item := range items {
		var d dependency
		var err error
		switch item[0] {
		case '"':
			var name string
			_ = json.Unmarshal(item, &name)
			d.name, err = checkDepName(key, i, name)
		case '{':
			d, err = decodeDepObject(key, i, item, local)
		default:
			if local {
				return nil, errorf(key, "%q item %d must be %s, not %s", key, i+1, depForms, valueKind(item))
			}
			return nil, errorf(key, "%q item %d must be a container name in double quotes, not %s", key, i+1, valueKind(item))
		}
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(deps, func(o dependency) bool { return o.id() == d.id() }) {
			return nil, errorf(key, "%q lists %s twice; keep one", key, quote(d.id()))
		}
		deps = append(deps, d)
	}
	return deps, nil
}

// setDeps stores the items of startDeps (start true) or stopDeps in s. A container may be
// named in both lists, but optional in both or in neither.
func setDeps(s *Spec, key string, deps []dependency, start bool) error {
	names, other := []string{}, s.StartDeps
	if start {
		other = s.StopDeps
	}
	var locals []LocalDep
	for _, d := range deps {
		if d.local != nil {
			locals = append(locals, *d.local)
			continue
		}
		names = append(names, d.name)
		if slices.Contains(other, d.name) {
			if slices.Contains(s.Optional, d.name) != d.optional {
				return errorf(key, "%q is optional in one of startDeps and stopDeps and required in the other; a container is either optional or not", d.name)
			}
			continue
		}
		if d.optional {
			s.Optional = append(s.Optional, d.name)
		}
	}
	if start {
		s.StartDeps, s.LocalStartDeps = names, locals
	} else {
		s.StopDeps = names
	}
	return nil
}

func checkDepName(key string, i int, name string) (string, error) {
	if name == "" {
		return "", errorf(key, "%q has an empty name at item %d; write the container's name or remove it", key, i+1)
	}
	if problem := checkContainerName(name); problem != "" {
		return "", errorf(key, "%q has %s, %s", key, quote(name), problem)
	}
	return name, nil
}

// decodeDepObject reads one object item: {"name":..., "optional":...} or one local check.
func decodeDepObject(key string, i int, raw json.RawMessage, local bool) (dependency, error) {
	members, err := readObject(raw)
	if err != nil {
		return dependency{}, errorf(key, "%q item %d: %s", key, i+1, strings.TrimPrefix(err.Error(), EnvVar+": "))
	}
	fields := map[string]json.RawMessage{}
	for _, m := range members {
		if !slices.Contains(depKeys, m.key) {
			hint := ""
			if s := suggest(m.key, depKeys); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return dependency{}, errorf(key, "%q item %d has the unknown key %s%s; an item is %s", key, i+1, quote(m.key), hint, depForms)
		}
		if _, dup := fields[m.key]; dup {
			return dependency{}, errorf(key, "%q item %d has %q twice; keep one", key, i+1, m.key)
		}
		fields[m.key] = m.value
	}
	var kinds []string
	for _, k := range depKeys {
		if _, ok := fields[k]; ok && k != "optional" {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) != 1 {
		return dependency{}, errorf(key, "%q item %d must have exactly one of \"name\", \"tcp\", \"http\" and \"file\"; an item is %s", key, i+1, depForms)
	}
	kind := kinds[0]
	text, ok := stringValue(fields[kind])
	if !ok {
		return dependency{}, errorf(key, "%q item %d: %q must be a string, not %s", key, i+1, kind, valueKind(fields[kind]))
	}
	if kind == "name" {
		d := dependency{}
		if d.name, err = checkDepName(key, i, text); err != nil {
			return dependency{}, err
		}
		if raw, ok := fields["optional"]; ok {
			switch string(raw) {
			case "true":
				d.optional = true
			case "false":
			default:
				return dependency{}, errorf(key, "%q item %d: \"optional\" must be true or false, not %s", key, i+1, valueKind(raw))
			}
		}
		return d, nil
	}
	if _, ok := fields["optional"]; ok {
		return dependency{}, errorf(key, "%q item %d: \"optional\" applies to a container (\"name\"), not to a %q check", key, i+1, kind)
	}
	if !local {
		return dependency{}, errorf(key, "%q item %d is a %q check, but local checks are start dependencies only: move it to \"startDeps\"", key, i+1, kind)
	}
	if problem := checkLocal(kind, text); problem != "" {
		return dependency{}, errorf(key, "%q item %d: %q is %s, %s", key, i+1, kind, quote(text), problem)
	}
	return dependency{local: &LocalDep{Kind: kind, Target: text}}, nil
}

func stringValue(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s, true
}

// checkLocal says what is wrong with a local check's target, or "".
func checkLocal(kind, target string) string {
	switch kind {
	case TCP:
		host, port, err := net.SplitHostPort(target)
		if err != nil || host == "" {
			return `which is not host:port; write it like "127.0.0.1:5432" or "[::1]:5432"`
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "whose port is not a number from 1 to 65535"
		}
	case HTTP:
		u, err := url.Parse(target)
		if err != nil || u.Scheme != "http" || u.Host == "" || bytes.ContainsAny([]byte(target), " \t\n") {
			return `which is not an http:// URL; write it like "http://127.0.0.1:15021/healthz/ready"`
		}
	case File:
		if !filepath.IsAbs(target) {
			return `which is not an absolute path; write it like "/shared/ready"`
		}
	}
	return ""
}

// StopAction is an HTTP request that stops the child (or, for a stopper, a container koordinator
// does not wrap) in place of the stop signal: Istio's POST /quitquitquit, say.
type StopAction struct {
	Method string // GET, POST, PUT or DELETE
	URL    string // http:// on the pod's loopback
}

func (a StopAction) String() string { return a.Method + " " + a.URL }

const stopActionForm = `{"http": "POST http://127.0.0.1:15020/quitquitquit"}`

func decodeStopAction(key string, raw json.RawMessage) (*StopAction, error) {
	if raw[0] != '{' {
		return nil, errorf(key, "%q must be an object like %s, not %s", key, stopActionForm, valueKind(raw))
	}
	members, err := readObject(raw)
	if err != nil {
		return nil, errorf(key, "%q: %s", key, strings.TrimPrefix(err.Error(), EnvVar+": "))
	}
	if len(members) != 1 || members[0].key != HTTP {
		return nil, errorf(key, "%q must have exactly the key \"http\", like %s", key, stopActionForm)
	}
	text, ok := stringValue(members[0].value)
	if !ok {
		return nil, errorf(key, "%q: \"http\" must be a string like \"POST http://127.0.0.1:15020/quitquitquit\", not %s", key, valueKind(members[0].value))
	}
	method, target, found := strings.Cut(strings.TrimSpace(text), " ")
	target = strings.TrimSpace(target)
	if !found || !slices.Contains([]string{"GET", "POST", "PUT", "DELETE"}, method) {
		return nil, errorf(key, "%q is %s; write the method (GET, POST, PUT or DELETE), a space and the URL, like \"POST http://127.0.0.1:15020/quitquitquit\"", key, quote(text))
	}
	if problem := checkLocal(HTTP, target); problem != "" {
		return nil, errorf(key, "%q has the URL %s, %s", key, quote(target), problem)
	}
	u, _ := url.Parse(target)
	if !isLoopback(u.Hostname()) {
		return nil, errorf(key, "%q has the URL %s, whose host is not this pod's loopback: a stop action reaches a container of the same pod, so use 127.0.0.1, [::1] or localhost", key, quote(target))
	}
	return &StopAction{Method: method, URL: target}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckStopper says what keeps s from serving a stopper: koordinator run with a stopAction and no
// command, which waits for its stop dependencies and makes the stop action for a container it
// does not wrap. nil when s fits.
func (s Spec) CheckStopper() error {
	switch {
	case s.StopAction == nil:
		return errorf("stopAction", "there is no command to run and no \"stopAction\"; give a command, or a stopAction like %s to run as a stopper", stopActionForm)
	case len(s.StopDeps) == 0:
		return errorf("stopDeps", "a stopper (a stopAction and no command) needs \"stopDeps\": the containers whose exit it waits for before it makes the stop action")
	case len(s.StartDeps) > 0 || len(s.LocalStartDeps) > 0:
		return errorf("startDeps", "a stopper (a stopAction and no command) runs no child, so it has nothing to start: remove \"startDeps\"")
	}
	return nil
}

// The pod restart policies a spec without the API may state.
var podRestartPolicies = []string{"Never", "OnFailure"}

// checkNoAPI says what keeps s from running without the API ("api": false), or nil. It also
// fills in the default podRestartPolicy.
func (s *Spec) checkNoAPI(apiKey string) error {
	switch {
	case !s.NoAPI && s.PodRestartPolicy != "":
		return errorf("podRestartPolicy", "\"podRestartPolicy\" is read only with \"api\": false; with the API koordinator reads the pod's own policy: remove it")
	case !s.NoAPI:
		return nil
	case len(s.StartDeps) > 0:
		return errorf(apiKey, "with \"api\": false, %q in startDeps cannot be checked: readiness comes only from the API; use a local check like {\"tcp\": \"127.0.0.1:5432\"}, or remove \"api\": false", s.StartDeps[0])
	case len(s.Optional) > 0:
		return errorf(apiKey, "with \"api\": false, whether the pod has %q cannot be known: make it required, or remove \"api\": false", s.Optional[0])
	}
	if s.PodRestartPolicy == "" {
		s.PodRestartPolicy = "Never"
	}
	return nil
}
