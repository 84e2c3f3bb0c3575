// Package spec turns the text of KOORDINATOR_SPEC into a validated Spec.
//
// It is pure: bytes in, a Spec with every default filled in or one *Error out.
// It does not log, exit or read the environment (FromEnv takes a lookup function).
package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvVar is the variable koordinator reads; TypoEnvVar is the widely copied misspelling (three O's).
const (
	EnvVar     = "KOORDINATOR_SPEC"
	TypoEnvVar = "KOOORDINATOR_SPEC"
)

// Spec is the effective configuration of one wrapped container.
type Spec struct {
	Name      string   // this container's own name; "" when not given
	StartDeps []string // containers that must be Ready before the child starts; never nil after Parse
	StopDeps  []string // containers whose final exit stops the child; never nil after Parse
	Optional  []string // the containers of StartDeps and StopDeps that the pod may lack (sorted)

	LocalStartDeps []LocalDep // checks made from inside the pod before the child starts
	// NoAPI ("api": false): never contact the API; stop dependencies are judged from the
	// pod-local channel alone, as PodRestartPolicy ("Never" or "OnFailure") says the pod restarts.
	NoAPI            bool
	PodRestartPolicy string
	ProbeInterval    time.Duration  // how often LocalStartDeps are checked
	StopDelay        time.Duration  // wait after the stop condition holds, before signalling
	StartTimeout     time.Duration  // 0 means wait for startDeps without limit
	StopSignal       syscall.Signal // sent to the child's process group to stop it
	StopTimeout      time.Duration  // SIGKILL this long after StopSignal; 0 means right after it
	StopAction       *StopAction    // the request made in place of StopSignal; nil: none
	// RestartChild: "OnFailure" or "Always" starts a child that exited again, inside the
	// running container, while the stop condition does not hold; "" (written "Never"): never.
	RestartChild string

	TerminatedByStopDepExitCode int // exit code when the child ended after a stop because of stopDeps
	KilledByStopDepExitCode     int // exit code when that stop needed SIGKILL
}

// Default returns the spec used when KOORDINATOR_SPEC is unset or empty.
func Default() Spec {
	return Spec{
		StartDeps:     []string{},
		StopDeps:      []string{},
		StopSignal:    syscall.SIGTERM,
		StopTimeout:   30 * time.Second,
		ProbeInterval: 200 * time.Millisecond,
		// 128+SIGKILL: what a shell, and so most Job tooling, reports for a killed process.
		KilledByStopDepExitCode: 137,
	}
}

// HasDeps reports whether the spec has any dependency, container or local.
func (s Spec) HasDeps() bool {
	return len(s.StartDeps) > 0 || len(s.StopDeps) > 0 || len(s.LocalStartDeps) > 0
}

// NeedsAPI reports whether the spec names a container dependency and may use the API: only
// then is the API contacted.
func (s Spec) NeedsAPI() bool {
	return !s.NoAPI && (len(s.StartDeps) > 0 || len(s.StopDeps) > 0)
}

// field is one key of the spec object. alias is the name the Rust koordinator used for it.
type field struct {
	key, alias string
	decode     func(s *Spec, key string, raw json.RawMessage) error
}

var fields = []field{
	{key: "name", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.Name, err = decodeName(k, r)
		return err
	}},
	{key: "startDeps", decode: func(s *Spec, k string, r json.RawMessage) error {
		deps, err := decodeDeps(k, r, true)
		if err != nil {
			return err
		}
		return setDeps(s, k, deps, true)
	}},
	{key: "stopDeps", decode: func(s *Spec, k string, r json.RawMessage) error {
		deps, err := decodeDeps(k, r, false)
		if err != nil {
			return err
		}
		return setDeps(s, k, deps, false)
	}},
	{key: "stopDelay", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.StopDelay, err = decodeDuration(k, r)
		return err
	}},
	{key: "startTimeout", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.StartTimeout, err = decodeDuration(k, r)
		return err
	}},
	{key: "api", decode: func(s *Spec, k string, r json.RawMessage) error {
		switch string(r) {
		case "true":
		case "false":
			s.NoAPI = true
		default:
			return errorf(k, "%q must be true or false, not %s", k, valueKind(r))
		}
		return nil
	}},
	{key: "podRestartPolicy", decode: func(s *Spec, k string, r json.RawMessage) error {
		v, ok := stringValue(r)
		if !ok || !slices.Contains(podRestartPolicies, v) {
			return errorf(k, "%q must be \"Never\" or \"OnFailure\" (the pod's restartPolicy; under Always nothing exits for good), not %s", k, truncate(string(r)))
		}
		s.PodRestartPolicy = v
		return nil
	}},
	{key: "restartChild", decode: func(s *Spec, k string, r json.RawMessage) error {
		v, ok := stringValue(r)
		switch {
		case ok && v == "Never":
		case ok && (v == "OnFailure" || v == "Always"):
			s.RestartChild = v
		default:
			return errorf(k, "%q must be \"Never\", \"OnFailure\" or \"Always\", not %s", k, truncate(string(r)))
		}
		return nil
	}},
	{key: "probeInterval", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.ProbeInterval, err = decodeDuration(k, r)
		if err == nil && s.ProbeInterval < 10*time.Millisecond {
			err = errorf(k, "%q is %v, shorter than 10ms; checks that often would only burn CPU", k, s.ProbeInterval)
		}
		return err
	}},
	{key: "stopSignal", alias: "termSignal", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.StopSignal, err = decodeSignal(k, r)
		return err
	}},
	{key: "stopTimeout", alias: "termTimeout", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.StopTimeout, err = decodeDuration(k, r)
		return err
	}},
	{key: "stopAction", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.StopAction, err = decodeStopAction(k, r)
		return err
	}},
	{key: "terminatedByStopDepExitCode", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.TerminatedByStopDepExitCode, err = decodeExitCode(k, r)
		return err
	}},
	{key: "killedByStopDepExitCode", decode: func(s *Spec, k string, r json.RawMessage) (err error) {
		s.KilledByStopDepExitCode, err = decodeExitCode(k, r)
		return err
	}},
}

// example is what a spec looks like, for messages that have to show one.
const example = `{"startDeps":["proxy"]}`

// Parse turns the JSON text of KOORDINATOR_SPEC into a validated Spec with defaults filled in.
// Empty or whitespace-only input yields Default(). Errors are *Error.
func Parse(data []byte) (Spec, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Default(), nil
	}
	members, err := readObject(data)
	if err != nil {
		return Spec{}, err
	}
	s := Default()
	written := map[string]string{} // canonical key -> the key as the user wrote it
	for _, m := range members {
		f, ok := lookupField(m.key)
		if !ok {
			return Spec{}, unknownField(m.key)
		}
		if prev, dup := written[f.key]; dup {
			if prev == m.key {
				return Spec{}, errorf(m.key, "%s appears twice; keep one", quote(m.key))
			}
			return Spec{}, errorf(m.key, "both %q and %q are set, and one is an alias of the other; keep only %q",
				prev, m.key, f.key)
		}
		written[f.key] = m.key
		if string(m.value) == "null" { // null means "the default"
			continue
		}
		if err := f.decode(&s, m.key, m.value); err != nil {
			return Spec{}, err
		}
	}
	slices.Sort(s.Optional)
	if err := s.checkNoAPI("api"); err != nil {
		return Spec{}, err
	}
	// Checked after the loop: "name" may come after the lists.
	for _, list := range []struct {
		key  string
		deps []string
	}{{"startDeps", s.StartDeps}, {"stopDeps", s.StopDeps}} {
		if s.Name != "" && slices.Contains(list.deps, s.Name) {
			return Spec{}, errorf(list.key, "%q lists %q, which is this container's own \"name\": a container cannot depend on itself",
				list.key, s.Name)
		}
	}
	return s, nil
}

func lookupField(key string) (field, bool) {
	for _, f := range fields {
		if key == f.key || (f.alias != "" && key == f.alias) {
			return f, true
		}
	}
	return field{}, false
}

func unknownField(key string) error {
	if key == "whenStopDepExited" {
		return errorf(key, `unknown field "whenStopDepExited" (from the Rust koordinator): set "stopSignal" instead, it is used for every stop`)
	}
	var known []string
	for _, f := range fields {
		known = append(known, f.key)
		if f.alias != "" {
			known = append(known, f.alias)
		}
	}
	if s := suggest(key, known); s != "" {
		return errorf(key, "unknown field %s (did you mean %q?)", quote(key), s)
	}
	return errorf(key, "unknown field %s; the fields are %s", quote(key), strings.Join(known, ", "))
}

type member struct {
	key   string
	value json.RawMessage
}

// readObject splits the top-level JSON object into its members in order. Unlike decoding into a
// map it keeps duplicate keys, so that Parse can reject them instead of silently keeping the last.
func readObject(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // so that a top-level 1e999 is reported as a number, not as a float overflow
	tok, err := dec.Token()
	if err != nil {
		return nil, invalidJSON(err, data)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errorf("", "must be a JSON object like %s, not %s", example, tokenKind(tok))
	}
	var members []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidJSON(err, data)
		}
		key, _ := tok.(string) // the decoder only yields string keys inside an object
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, invalidJSON(err, data)
		}
		members = append(members, member{key, value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, invalidJSON(err, data)
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return nil, errorf("", "unexpected text after the JSON object at byte %d; the spec must be exactly one object like %s",
			end, example)
	}
	return members, nil
}

func invalidJSON(err error, data []byte) error {
	msg := "not valid JSON"
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		msg += fmt.Sprintf(" at byte %d: %v", syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		msg += ": it ends too early (a missing \"}\" or \"]\"?)"
	default:
		msg += ": " + err.Error()
	}
	if !bytes.Contains(data, []byte(`"`)) {
		// The usual cause: YAML-style {startDeps: [proxy]} or single quotes.
		return errorf("", "%s; keys and strings need double quotes, like %s", msg, example)
	}
	return errorf("", "%s; the spec must be a JSON object like %s", msg, example)
}

// tokenKind names a top-level JSON token for messages.
func tokenKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			return "a list"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return "null"
	}
}

// valueKind names a JSON value for messages.
func valueKind(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "the number " + truncate(string(raw))
	}
}

func decodeName(key string, raw json.RawMessage) (string, error) {
	if raw[0] != '"' {
		return "", errorf(key, "%q must be this container's name as a string, like \"main\", not %s", key, valueKind(raw))
	}
	var name string
	_ = json.Unmarshal(raw, &name) // a JSON string always decodes
	if name == "" {
		return "", nil // an empty name means "not given": templated specs produce it
	}
	if problem := checkContainerName(name); problem != "" {
		return "", errorf(key, "%q is %s, %s", key, quote(name), problem)
	}
	return name, nil
}

// checkContainerName says why name is not a Kubernetes container name (a DNS-1123 label), or "".
func checkContainerName(name string) string {
	if isDNSLabel(name) {
		return ""
	}
	problem := "which is not a valid container name: Kubernetes container names are lowercase letters, " +
		"digits and '-', at most 63 characters, starting and ending with a letter or digit"
	if fixed := strings.ToLower(strings.TrimSpace(name)); isDNSLabel(fixed) {
		problem += fmt.Sprintf(" (did you mean %q?)", fixed)
	}
	return problem
}

// IsContainerName reports whether name is a valid Kubernetes container name (a DNS-1123 label).
func IsContainerName(name string) bool { return isDNSLabel(name) }

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

const durationForms = `like "10s", "1m30s" or "500ms" (units ns, us, ms, s, m, h)`

// decodeDuration reads a Go duration string. A string of digits alone counts as seconds,
// as it did in the Rust koordinator; JSON numbers are rejected there and here, because
// nothing says whether 10 means seconds or nanoseconds.
func decodeDuration(key string, raw json.RawMessage) (time.Duration, error) {
	if raw[0] != '"' {
		hint := ""
		if n, err := strconv.ParseUint(string(raw), 10, 63); err == nil {
			hint = fmt.Sprintf(` (write "%ds" for %d seconds)`, n, n)
		}
		return 0, errorf(key, "%q must be a duration string %s, not %s%s", key, durationForms, valueKind(raw), hint)
	}
	var text string
	_ = json.Unmarshal(raw, &text)
	if text == "" {
		return 0, errorf(key, "%q is an empty string; write a duration %s, or leave the field out for the default", key, durationForms)
	}
	if allDigits(text) {
		secs, err := strconv.ParseInt(text, 10, 64)
		if err != nil || secs > int64(maxDuration/time.Second) {
			return 0, errorf(key, "%q is %s seconds, more than the longest duration, %v", key, quote(text), maxDuration)
		}
		return time.Duration(secs) * time.Second, nil
	}
	d, err := time.ParseDuration(text)
	if err != nil {
		return 0, errorf(key, "%q is %s, which is not a duration; write it %s", key, quote(text), durationForms)
	}
	if d < 0 {
		return 0, errorf(key, "%q is %s, but it cannot be negative", key, quote(text))
	}
	return d, nil
}

const maxDuration = time.Duration(1<<63 - 1)

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func decodeSignal(key string, raw json.RawMessage) (syscall.Signal, error) {
	var text, shown string
	switch {
	case raw[0] == '"':
		_ = json.Unmarshal(raw, &text)
		shown = quote(text)
	case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
		text, shown = string(raw), truncate(string(raw))
		if !allDigits(strings.TrimPrefix(text, "-")) {
			return 0, errorf(key, "%q is %s, but a signal number must be a whole number like 15", key, shown)
		}
	default:
		return 0, errorf(key, "%q must be a signal name like \"SIGTERM\" or \"TERM\", or a number like 15, not %s", key, valueKind(raw))
	}
	sig, problem := parseSignal(text)
	if problem != "" {
		return 0, errorf(key, "%q is %s%s", key, shown, problem)
	}
	return sig, nil
}

func decodeExitCode(key string, raw json.RawMessage) (int, error) {
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return 0, errorf(key, "%q must be a whole number from 0 to 255, like 137, not %s", key, valueKind(raw))
	}
	code, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, errorf(key, "%q is %s, but it must be a whole number from 0 to 255", key, truncate(string(raw)))
	}
	if err != nil || code < 0 || code > 255 {
		hint := ""
		if code < 0 && key == "terminatedByStopDepExitCode" {
			// The Rust koordinator read a negative value as "exit with the child's own code".
			hint = " (a negative value for \"use the child's own exit code\" is not supported)"
		}
		return 0, errorf(key, "%q is %s, but exit codes go from 0 to 255%s", key, truncate(string(raw)), hint)
	}
	return int(code), nil
}

// wireSpec is the spec as MarshalJSON writes it: canonical keys in the documented order.
type wireSpec struct {
	Name                        string `json:"name,omitempty"`
	StartDeps                   []any  `json:"startDeps"`
	StopDeps                    []any  `json:"stopDeps"`
	StopDelay                   string `json:"stopDelay"`
	StartTimeout                string `json:"startTimeout"`
	ProbeInterval               string `json:"probeInterval"`
	API                         *bool  `json:"api,omitempty"`
	PodRestartPolicy            string `json:"podRestartPolicy,omitempty"`
	RestartChild                string `json:"restartChild,omitempty"`
	StopSignal                  any    `json:"stopSignal"`
	StopTimeout                 string `json:"stopTimeout"`
	StopAction                  any    `json:"stopAction,omitempty"`
	TerminatedByStopDepExitCode int    `json:"terminatedByStopDepExitCode"`
	KilledByStopDepExitCode     int    `json:"killedByStopDepExitCode"`
}

// MarshalJSON renders the effective spec with canonical field names, durations as Go duration
// strings ("30s", "0s"), the signal as its name ("SIGTERM"), for `koordinator --check`.
// Parse reads the result back to an equal Spec.
func (s Spec) MarshalJSON() ([]byte, error) {
	w := wireSpec{
		Name:                        s.Name,
		StartDeps:                   s.wireDeps(s.StartDeps),
		StopDeps:                    s.wireDeps(s.StopDeps),
		StopDelay:                   s.StopDelay.String(),
		StartTimeout:                s.StartTimeout.String(),
		ProbeInterval:               s.ProbeInterval.String(),
		StopSignal:                  int(s.StopSignal), // real-time signals have no portable name
		StopTimeout:                 s.StopTimeout.String(),
		TerminatedByStopDepExitCode: s.TerminatedByStopDepExitCode,
		KilledByStopDepExitCode:     s.KilledByStopDepExitCode,
	}
	for _, d := range s.LocalStartDeps {
		w.StartDeps = append(w.StartDeps, map[string]string{d.Kind: d.Target})
	}
	if name, ok := signalName(s.StopSignal); ok {
		w.StopSignal = name
	}
	if a := s.StopAction; a != nil {
		w.StopAction = map[string]string{HTTP: a.String()}
	}
	w.RestartChild = s.RestartChild
	if s.NoAPI {
		no := false
		w.API, w.PodRestartPolicy = &no, s.PodRestartPolicy
	}
	return json.Marshal(w)
}

// wireDeps renders container names as MarshalJSON writes them: a plain name, or an object when
// it is optional.
func (s Spec) wireDeps(names []string) []any {
	out := []any{}
	for _, n := range names {
		if slices.Contains(s.Optional, n) {
			out = append(out, map[string]any{"name": n, "optional": true})
			continue
		}
		out = append(out, n)
	}
	return out
}

// FromEnv reads KOORDINATOR_SPEC through lookup (os.LookupEnv in production). If only the
// three-O typo variable is set, it returns an *Error naming the typo. Returns the raw text too
// (callers compare it with other containers' literal env values).
func FromEnv(lookup func(string) (string, bool)) (s Spec, raw string, err error) {
	raw, set := lookup(EnvVar)
	typo, typoSet := lookup(TypoEnvVar)
	blank := func(v string) bool { return strings.TrimSpace(v) == "" }
	// Never run silently without the dependencies the user wrote under the misspelt name.
	if typoSet && blank(raw) {
		if !set {
			return Spec{}, raw, errorf("", "not set, but %s (three O's, a typo copied from an old example) is; rename that variable to %s",
				TypoEnvVar, EnvVar)
		}
		if !blank(typo) {
			return Spec{}, raw, errorf("", "is empty, but %s (three O's, a typo copied from an old example) holds a spec; rename that variable to %s and remove the empty one",
				TypoEnvVar, EnvVar)
		}
	}
	s, err = Parse([]byte(raw))
	return s, raw, err
}
