package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// with returns Default() changed by edit, so each case shows only what differs.
func with(edit func(s *Spec)) Spec {
	s := Default()
	edit(&s)
	return s
}

func TestDefault(t *testing.T) {
	want := Spec{
		StartDeps:               []string{},
		StopDeps:                []string{},
		StopSignal:              syscall.SIGTERM,
		StopTimeout:             30 * time.Second,
		ProbeInterval:           200 * time.Millisecond,
		KilledByStopDepExitCode: 137,
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() = %+v, want %+v", got, want)
	}
	if Default().HasDeps() {
		t.Error("Default().HasDeps() = true")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Spec
	}{
		{"empty", "", Default()},
		{"whitespace", " \n\t ", Default()},
		{"empty object", "{}", Default()},
		{"object with spaces", " {\n} \n", Default()},
		{"seed main", `{"startDeps":["cloud-sql-proxy"]}`,
			with(func(s *Spec) { s.StartDeps = []string{"cloud-sql-proxy"} })},
		{"seed sidecar", `{"stopDeps":["main"]}`,
			with(func(s *Spec) { s.StopDeps = []string{"main"} })},
		{"lists keep order", `{"startDeps":["b","a","c-1"],"stopDeps":["z","0"]}`,
			with(func(s *Spec) { s.StartDeps = []string{"b", "a", "c-1"}; s.StopDeps = []string{"z", "0"} })},
		{"same name in both lists", `{"startDeps":["db"],"stopDeps":["db"]}`,
			with(func(s *Spec) { s.StartDeps = []string{"db"}; s.StopDeps = []string{"db"} })},
		{"63-character name", `{"startDeps":["` + strings.Repeat("a", 63) + `"]}`,
			with(func(s *Spec) { s.StartDeps = []string{strings.Repeat("a", 63)} })},
		{"name", `{"name":"main","startDeps":["proxy"]}`,
			with(func(s *Spec) { s.Name = "main"; s.StartDeps = []string{"proxy"} })},
		{"empty name is no name", `{"name":""}`, Default()},
		{"stopDelay", `{"stopDelay":"10s"}`, with(func(s *Spec) { s.StopDelay = 10 * time.Second })},
		{"compound duration", `{"stopDelay":"1m30s"}`, with(func(s *Spec) { s.StopDelay = 90 * time.Second })},
		{"fractional duration", `{"stopDelay":"1.5s"}`, with(func(s *Spec) { s.StopDelay = 1500 * time.Millisecond })},
		{"unitless digits are seconds (Rust koordinator)", `{"stopDelay":"10"}`,
			with(func(s *Spec) { s.StopDelay = 10 * time.Second })},
		{"zero", `{"stopDelay":"0"}`, Default()},
		{"startTimeout", `{"startTimeout":"2m"}`, with(func(s *Spec) { s.StartTimeout = 2 * time.Minute })},
		{"stopTimeout", `{"stopTimeout":"5s"}`, with(func(s *Spec) { s.StopTimeout = 5 * time.Second })},
		{"stopTimeout zero", `{"stopTimeout":"0s"}`, with(func(s *Spec) { s.StopTimeout = 0 })},
		{"termTimeout alias", `{"termTimeout":"45s"}`, with(func(s *Spec) { s.StopTimeout = 45 * time.Second })},
		{"stopSignal full name", `{"stopSignal":"SIGINT"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGINT })},
		{"stopSignal short name", `{"stopSignal":"QUIT"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGQUIT })},
		{"stopSignal any case", `{"stopSignal":"sigUsr1"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGUSR1 })},
		{"stopSignal number", `{"stopSignal":2}`, with(func(s *Spec) { s.StopSignal = syscall.SIGINT })},
		{"stopSignal numeric string", `{"stopSignal":"3"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGQUIT })},
		{"stopSignal SIGKILL", `{"stopSignal":"KILL"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGKILL })},
		{"stopSignal SIGWINCH (httpd)", `{"stopSignal":"SIGWINCH"}`, with(func(s *Spec) { s.StopSignal = 28 })},
		{"stopSignal alias POLL", `{"stopSignal":"POLL"}`, with(func(s *Spec) { s.StopSignal = 29 })},
		{"stopSignal real-time", `{"stopSignal":64}`, with(func(s *Spec) { s.StopSignal = 64 })},
		// koordinator cannot catch 34, but it can send it: glibc programs know it as SIGRTMIN.
		{"stopSignal 34", `{"stopSignal":34}`, with(func(s *Spec) { s.StopSignal = 34 })},
		{"termSignal alias", `{"termSignal":"SIGHUP"}`, with(func(s *Spec) { s.StopSignal = syscall.SIGHUP })},
		{"exit codes", `{"terminatedByStopDepExitCode":3,"killedByStopDepExitCode":255}`,
			with(func(s *Spec) { s.TerminatedByStopDepExitCode = 3; s.KilledByStopDepExitCode = 255 })},
		{"exit code zero", `{"killedByStopDepExitCode":0}`, with(func(s *Spec) { s.KilledByStopDepExitCode = 0 })},
		{"null means default", `{"name":null,"startDeps":null,"stopDeps":null,"stopDelay":null,"startTimeout":null,
			"stopSignal":null,"stopTimeout":null,"terminatedByStopDepExitCode":null,"killedByStopDepExitCode":null}`, Default()},
		{"null alias means default", `{"termSignal":null,"termTimeout":null}`, Default()},
		{"empty lists", `{"startDeps":[],"stopDeps":[]}`, Default()},
		{"every field", `{"name":"main","startDeps":["proxy"],"stopDeps":["worker"],"stopDelay":"10s",
			"startTimeout":"5m","stopSignal":"SIGINT","stopTimeout":"1m","terminatedByStopDepExitCode":1,
			"killedByStopDepExitCode":2}`,
			Spec{Name: "main", StartDeps: []string{"proxy"}, StopDeps: []string{"worker"}, StopDelay: 10 * time.Second,
				StartTimeout: 5 * time.Minute, StopSignal: syscall.SIGINT, StopTimeout: time.Minute,
				ProbeInterval: 200 * time.Millisecond, TerminatedByStopDepExitCode: 1, KilledByStopDepExitCode: 2}},
		{"optional and local dependencies", `{"startDeps":[{"name":"istio-proxy","optional":true},"db",{"tcp":"127.0.0.1:5432"},
			{"http":"http://127.0.0.1:15021/healthz/ready"},{"file":"/shared/ready"},{"name":"mesh","optional":false}],
			"stopDeps":["db",{"name":"istio-proxy","optional":true},{"name":"logs","optional":true}],"probeInterval":"50ms"}`,
			with(func(s *Spec) {
				s.StartDeps = []string{"istio-proxy", "db", "mesh"}
				s.StopDeps = []string{"db", "istio-proxy", "logs"}
				s.Optional = []string{"istio-proxy", "logs"}
				s.LocalStartDeps = []LocalDep{{TCP, "127.0.0.1:5432"}, {HTTP, "http://127.0.0.1:15021/healthz/ready"}, {File, "/shared/ready"}}
				s.ProbeInterval = 50 * time.Millisecond
			})},
		{"stop action", `{"stopAction":{"http":"POST http://127.0.0.1:15020/quitquitquit"}}`,
			with(func(s *Spec) { s.StopAction = &StopAction{Method: "POST", URL: "http://127.0.0.1:15020/quitquitquit"} })},
		{"stop action on [::1] and localhost", `{"stopAction":{"http":"GET http://[::1]:9091/quitquitquit"}}`,
			with(func(s *Spec) { s.StopAction = &StopAction{Method: "GET", URL: "http://[::1]:9091/quitquitquit"} })},
		{"without the API", `{"api":false,"startDeps":[{"file":"/r"}],"stopDeps":["main"]}`,
			with(func(s *Spec) {
				s.NoAPI, s.PodRestartPolicy = true, "Never"
				s.LocalStartDeps = []LocalDep{{File, "/r"}}
				s.StopDeps = []string{"main"}
			})},
		{"without the API, OnFailure", `{"stopDeps":["main"],"podRestartPolicy":"OnFailure","api":false}`,
			with(func(s *Spec) { s.NoAPI, s.PodRestartPolicy, s.StopDeps = true, "OnFailure", []string{"main"} })},
		{"api true is the default", `{"api":true}`, Default()},
		{"restartChild", `{"restartChild":"OnFailure"}`, with(func(s *Spec) { s.RestartChild = "OnFailure" })},
		{"restartChild Never is the default", `{"restartChild":"Never"}`, Default()},
		{"IPv6 and a host name", `{"startDeps":[{"tcp":"[::1]:80"},{"tcp":"localhost:8080"}]}`,
			with(func(s *Spec) { s.LocalStartDeps = []LocalDep{{TCP, "[::1]:80"}, {TCP, "localhost:8080"}} })},
		{"Rust koordinator README", `{"startDeps":["cloud-sql-proxy"],"stopDelay":"10s"}`,
			with(func(s *Spec) { s.StartDeps = []string{"cloud-sql-proxy"}; s.StopDelay = 10 * time.Second })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%s)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
			if got.StartDeps == nil || got.StopDeps == nil {
				t.Fatalf("Parse(%s) left a nil list: %#v", tt.in, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		field string   // want Error.Field
		want  []string // substrings of the message
	}{
		// The whole spec.
		{"list", `[]`, "", []string{"must be a JSON object", "not a list"}},
		{"string", `"x"`, "", []string{"must be a JSON object", "not a string"}},
		{"number", `7`, "", []string{"must be a JSON object", "not a number"}},
		{"huge number", `1e999`, "", []string{"must be a JSON object", "not a number"}},
		{"null", `null`, "", []string{"must be a JSON object", "not null"}},
		{"truncated", `{"startDeps":["a"]`, "", []string{"not valid JSON", "ends too early"}},
		{"syntax", `{"startDeps":["a"],}`, "", []string{"not valid JSON at byte"}},
		{"YAML style", `{startDeps: [proxy]}`, "", []string{"not valid JSON", "need double quotes", `{"startDeps":["proxy"]}`}},
		{"single quotes", `{'stopDeps': ['main']}`, "", []string{"need double quotes"}},
		{"trailing data", `{} {}`, "", []string{"unexpected text after the JSON object at byte 2"}},
		{"trailing garbage", `{"stopDeps":["main"]} x`, "", []string{"unexpected text after the JSON object"}},

		// Dependency items.
		{"number item", `{"startDeps":[1]}`, "startDeps", []string{`"startDeps" item 1 must be a container name like "proxy", {"name":"proxy","optional":true}`, "not the number 1"}},
		{"number item in stopDeps", `{"stopDeps":[1]}`, "stopDeps", []string{`"stopDeps" item 1 must be a container name in double quotes, not the number 1`}},
		{"unknown key in an item", `{"startDeps":[{"nmae":"proxy"}]}`, "startDeps", []string{`"startDeps" item 1 has the unknown key "nmae" (did you mean "name"?)`}},
		{"two kinds in an item", `{"startDeps":[{"name":"proxy","tcp":"127.0.0.1:1"}]}`, "startDeps", []string{`item 1 must have exactly one of "name", "tcp", "http" and "file"`}},
		{"no kind in an item", `{"startDeps":[{"optional":true}]}`, "startDeps", []string{`item 1 must have exactly one of`}},
		{"optional local check", `{"startDeps":[{"tcp":"127.0.0.1:1","optional":true}]}`, "startDeps", []string{`"optional" applies to a container ("name"), not to a "tcp" check`}},
		{"optional not a boolean", `{"startDeps":[{"name":"a","optional":"yes"}]}`, "startDeps", []string{`"optional" must be true or false, not a string`}},
		{"local check in stopDeps", `{"stopDeps":[{"file":"/x"}]}`, "stopDeps", []string{`is a "file" check, but local checks are start dependencies only: move it to "startDeps"`}},
		{"tcp without port", `{"startDeps":[{"tcp":"127.0.0.1"}]}`, "startDeps", []string{`"tcp" is "127.0.0.1", which is not host:port`}},
		{"tcp bad port", `{"startDeps":[{"tcp":"127.0.0.1:99999"}]}`, "startDeps", []string{`whose port is not a number from 1 to 65535`}},
		{"tcp not a string", `{"startDeps":[{"tcp":5432}]}`, "startDeps", []string{`"tcp" must be a string, not the number 5432`}},
		{"http not a URL", `{"startDeps":[{"http":"127.0.0.1:15021/ready"}]}`, "startDeps", []string{`which is not an http:// URL`}},
		{"https", `{"startDeps":[{"http":"https://127.0.0.1/ready"}]}`, "startDeps", []string{`which is not an http:// URL`}},
		{"relative file", `{"startDeps":[{"file":"ready"}]}`, "startDeps", []string{`which is not an absolute path`}},
		{"same local check twice", `{"startDeps":[{"file":"/x"},{"file":"/x"}]}`, "startDeps", []string{`lists "file /x" twice`}},
		{"optional and required in one list", `{"startDeps":["a",{"name":"a","optional":true}]}`, "startDeps", []string{`lists "a" twice`}},
		{"optional in one list, required in the other", `{"startDeps":[{"name":"a","optional":true}],"stopDeps":["a"]}`, "stopDeps",
			[]string{`"a" is optional in one of startDeps and stopDeps and required in the other`}},
		{"required first, optional after", `{"stopDeps":["a"],"startDeps":[{"name":"a","optional":true}]}`, "startDeps",
			[]string{`"a" is optional in one of startDeps and stopDeps and required in the other`}},
		{"bad name in an item", `{"startDeps":[{"name":"Proxy"}]}`, "startDeps", []string{`which is not a valid container name`}},
		{"probeInterval too short", `{"probeInterval":"1ms"}`, "probeInterval", []string{`"probeInterval" is 1ms, shorter than 10ms`}},

		{"stop action not an object", `{"stopAction":"POST http://127.0.0.1/"}`, "stopAction", []string{`"stopAction" must be an object like {"http": "POST http://127.0.0.1:15020/quitquitquit"}, not a string`}},
		{"stop action other key", `{"stopAction":{"exec":"kill 1"}}`, "stopAction", []string{`"stopAction" must have exactly the key "http"`}},
		{"stop action without method", `{"stopAction":{"http":"http://127.0.0.1/quit"}}`, "stopAction", []string{`write the method (GET, POST, PUT or DELETE), a space and the URL`}},
		{"stop action bad method", `{"stopAction":{"http":"post http://127.0.0.1/quit"}}`, "stopAction", []string{`write the method (GET, POST, PUT or DELETE)`}},
		{"stop action not loopback", `{"stopAction":{"http":"POST http://10.0.0.1:15020/quitquitquit"}}`, "stopAction", []string{`whose host is not this pod's loopback`}},
		{"stop action by name", `{"stopAction":{"http":"POST http://istio:15020/quitquitquit"}}`, "stopAction", []string{`whose host is not this pod's loopback`}},
		{"stop action https", `{"stopAction":{"http":"POST https://127.0.0.1/quit"}}`, "stopAction", []string{`which is not an http:// URL`}},

		{"restartChild unknown", `{"restartChild":"always"}`, "restartChild", []string{`"restartChild" must be "Never", "OnFailure" or "Always", not "always"`}},
		{"api not a boolean", `{"api":"no"}`, "api", []string{`"api" must be true or false, not a string`}},
		{"container start dep without the API", `{"api":false,"startDeps":["proxy"]}`, "api", []string{`with "api": false, "proxy" in startDeps cannot be checked: readiness comes only from the API`}},
		{"optional without the API", `{"api":false,"stopDeps":[{"name":"a","optional":true}]}`, "api", []string{`whether the pod has "a" cannot be known`}},
		{"podRestartPolicy with the API", `{"podRestartPolicy":"Never","stopDeps":["a"]}`, "podRestartPolicy", []string{`"podRestartPolicy" is read only with "api": false`}},
		{"podRestartPolicy Always", `{"api":false,"podRestartPolicy":"Always"}`, "podRestartPolicy", []string{`must be "Never" or "OnFailure"`}},

		// Keys.
		{"lower case", `{"startdeps":["a"]}`, "startdeps", []string{`unknown field "startdeps" (did you mean "startDeps"?)`}},
		{"upper case", `{"STOPDELAY":"1s"}`, "STOPDELAY", []string{`unknown field "STOPDELAY" (did you mean "stopDelay"?)`}},
		{"missing letter", `{"stopDep":["a"]}`, "stopDep", []string{`(did you mean "stopDeps"?)`}},
		{"trailing space", `{"startDeps ":["a"]}`, "startDeps ", []string{`unknown field "startDeps " (did you mean "startDeps"?)`}},
		{"snake case", `{"stop_deps":["a"]}`, "stop_deps", []string{`(did you mean "stopDeps"?)`}},
		{"long snake case", `{"killed_by_stop_dep_exit_code":1}`, "killed_by_stop_dep_exit_code",
			[]string{`(did you mean "killedByStopDepExitCode"?)`}},
		{"swapped letters", `{"stpoSignal":"TERM"}`, "stpoSignal", []string{`(did you mean "stopSignal"?)`}},
		{"alias in other case", `{"termsignal":"TERM"}`, "termsignal", []string{`(did you mean "termSignal"?)`}},
		{"far off", `{"foo":1}`, "foo", []string{`unknown field "foo"; the fields are name, startDeps`}},
		{"short key suggests nothing", `{"stop":1}`, "stop", []string{`unknown field "stop"; the fields are`}},
		{"Rust option", `{"whenStopDepExited":{"signal":2}}`, "whenStopDepExited",
			[]string{`"whenStopDepExited" (from the Rust koordinator)`, `set "stopSignal" instead`}},
		{"alias and canonical", `{"stopSignal":"TERM","termSignal":"INT"}`, "termSignal",
			[]string{`both "stopSignal" and "termSignal" are set`, `keep only "stopSignal"`}},
		{"canonical and alias timeout", `{"termTimeout":"1s","stopTimeout":"2s"}`, "stopTimeout",
			[]string{`both "termTimeout" and "stopTimeout"`}},
		{"alias and canonical both null", `{"stopSignal":null,"termSignal":null}`, "termSignal", []string{"both"}},
		{"key twice", `{"stopDelay":"1s","stopDelay":"2s"}`, "stopDelay", []string{`"stopDelay" appears twice`}},

		// Dependency lists.
		{"deps as string", `{"startDeps":"proxy"}`, "startDeps",
			[]string{`"startDeps" must be a list of container names`, `not a string (write ["proxy"])`}},
		{"deps as object", `{"stopDeps":{"main":true}}`, "stopDeps", []string{"must be a list", "not an object"}},
		{"dep not a string", `{"stopDeps":["main",3]}`, "stopDeps", []string{`"stopDeps" item 2 must be a container name`, "not the number 3"}},
		{"dep null", `{"startDeps":[null]}`, "startDeps", []string{"item 1", "not null"}},
		{"empty dep", `{"startDeps":["a",""]}`, "startDeps", []string{"empty name at item 2"}},
		{"upper-case dep", `{"startDeps":["Proxy"]}`, "startDeps",
			[]string{`"startDeps" has "Proxy", which is not a valid container name`, "lowercase letters, digits and '-'", `(did you mean "proxy"?)`}},
		{"dep with space", `{"startDeps":["proxy "]}`, "startDeps", []string{`has "proxy "`, `(did you mean "proxy"?)`}},
		{"dep with underscore", `{"startDeps":["cloud_sql"]}`, "startDeps", []string{"not a valid container name"}},
		{"dep starting with dash", `{"stopDeps":["-main"]}`, "stopDeps", []string{"starting and ending with a letter or digit"}},
		{"dep ending with dash", `{"stopDeps":["main-"]}`, "stopDeps", []string{"not a valid container name"}},
		{"dep too long", `{"stopDeps":["` + strings.Repeat("a", 64) + `"]}`, "stopDeps", []string{"at most 63 characters"}},
		{"duplicate dep", `{"stopDeps":["main","main"]}`, "stopDeps", []string{`"stopDeps" lists "main" twice`}},
		{"self start dep", `{"name":"main","startDeps":["main"]}`, "startDeps",
			[]string{`"startDeps" lists "main", which is this container's own "name"`, "cannot depend on itself"}},
		{"self in both lists", `{"name":"a","stopDeps":["a"],"startDeps":["a"]}`, "startDeps", []string{`"startDeps" lists "a"`}},
		{"self stop dep, name last", `{"stopDeps":["a","proxy"],"name":"proxy"}`, "stopDeps", []string{`"stopDeps" lists "proxy"`}},

		// Name.
		{"name not a string", `{"name":5}`, "name", []string{`"name" must be this container's name as a string`}},
		{"invalid name", `{"name":"Main"}`, "name", []string{`"name" is "Main", which is not a valid container name`, `"main"?`}},

		// Durations.
		{"duration number", `{"stopDelay":10}`, "stopDelay",
			[]string{`"stopDelay" must be a duration string like "10s"`, `not the number 10 (write "10s" for 10 seconds)`}},
		{"duration float", `{"startTimeout":1.5}`, "startTimeout", []string{"must be a duration string", "not the number 1.5"}},
		{"duration bool", `{"stopTimeout":true}`, "stopTimeout", []string{"must be a duration string", "not a boolean"}},
		{"duration alias number", `{"termTimeout":30}`, "termTimeout", []string{`"termTimeout" must be a duration string`, `write "30s"`}},
		{"bad duration", `{"stopDelay":"10 s"}`, "stopDelay",
			[]string{`"stopDelay" is "10 s", which is not a duration`, "units ns, us, ms, s, m, h"}},
		{"duration-str unit", `{"stopDelay":"1min"}`, "stopDelay", []string{"not a duration"}},
		{"empty duration", `{"stopDelay":""}`, "stopDelay", []string{"empty string", "leave the field out"}},
		{"negative duration", `{"stopTimeout":"-5s"}`, "stopTimeout", []string{`"stopTimeout" is "-5s", but it cannot be negative`}},
		{"negative start timeout", `{"startTimeout":"-1ns"}`, "startTimeout", []string{"cannot be negative"}},
		{"huge seconds", `{"stopDelay":"99999999999999999999"}`, "stopDelay", []string{"more than the longest duration"}},
		{"huge duration", `{"stopDelay":"9999999999h"}`, "stopDelay", []string{"not a duration"}},

		// Signals.
		{"unknown signal", `{"stopSignal":"SIGFOO"}`, "stopSignal", []string{`"stopSignal" is "SIGFOO", which is not a signal name`}},
		{"misspelt signal", `{"stopSignal":"SIGTREM"}`, "stopSignal", []string{`(did you mean "SIGTERM"?)`}},
		{"misspelt short signal", `{"termSignal":"TREM"}`, "termSignal", []string{`"termSignal" is "TREM"`, `(did you mean "SIGTERM"?)`}},
		{"signal zero", `{"stopSignal":0}`, "stopSignal", []string{`"stopSignal" is 0, but Linux signals are numbered 1 to 64`}},
		{"signal 65", `{"stopSignal":"65"}`, "stopSignal", []string{`is "65", but Linux signals are numbered 1 to 64`}},
		{"negative signal", `{"stopSignal":-15}`, "stopSignal", []string{"numbered 1 to 64"}},
		{"signal float", `{"stopSignal":15.0}`, "stopSignal", []string{"whole number"}},
		{"signal list", `{"stopSignal":["TERM"]}`, "stopSignal", []string{`must be a signal name like "SIGTERM"`, "not a list"}},
		{"SIGSTOP", `{"stopSignal":"SIGSTOP"}`, "stopSignal", []string{`is "SIGSTOP", which only pauses the child`, `use "SIGTERM"`}},
		{"SIGSTOP by number", `{"stopSignal":19}`, "stopSignal", []string{`is 19 (SIGSTOP), which only pauses`}},
		{"SIGTSTP", `{"stopSignal":"TSTP"}`, "stopSignal", []string{"pauses the child"}},
		{"SIGTTIN", `{"stopSignal":"TTIN"}`, "stopSignal", []string{"pauses the child"}},
		{"SIGTTOU", `{"stopSignal":"TTOU"}`, "stopSignal", []string{"pauses the child"}},
		{"SIGCONT", `{"stopSignal":"CONT"}`, "stopSignal", []string{"resumes a paused process"}},
		{"SIGCHLD", `{"stopSignal":"SIGCHLD"}`, "stopSignal", []string{"ignored by default"}},
		{"SIGCLD", `{"stopSignal":"CLD"}`, "stopSignal", []string{"ignored by default"}},
		{"SIGURG", `{"stopSignal":"URG"}`, "stopSignal", []string{"ignored by default"}},
		{"glibc-reserved", `{"stopSignal":32}`, "stopSignal", []string{"(signal 32), which the C library reserves"}},

		// Exit codes.
		{"exit code too big", `{"killedByStopDepExitCode":256}`, "killedByStopDepExitCode",
			[]string{`"killedByStopDepExitCode" is 256, but exit codes go from 0 to 255`}},
		{"exit code overflow", `{"killedByStopDepExitCode":99999999999999999999}`, "killedByStopDepExitCode", []string{"from 0 to 255"}},
		{"negative exit code (Rust meaning)", `{"terminatedByStopDepExitCode":-1}`, "terminatedByStopDepExitCode",
			[]string{"from 0 to 255", `"use the child's own exit code" is not supported`}},
		{"exit code float", `{"terminatedByStopDepExitCode":1.5}`, "terminatedByStopDepExitCode", []string{"whole number from 0 to 255"}},
		{"exit code exponent", `{"terminatedByStopDepExitCode":1e2}`, "terminatedByStopDepExitCode", []string{"whole number"}},
		{"exit code string", `{"killedByStopDepExitCode":"137"}`, "killedByStopDepExitCode",
			[]string{"must be a whole number from 0 to 255, like 137, not a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", tt.in, s)
			}
			checkErrorForm(t, err)
			var e *Error
			errors.As(err, &e)
			if e.Field != tt.field {
				t.Errorf("Field = %q, want %q", e.Field, tt.field)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Parse(%s) error\n  %s\nlacks\n  %s", tt.in, err, want)
				}
			}
		})
	}
}

// checkErrorForm checks what every configuration error promises: an *Error, one line,
// starting with the variable's name.
func checkErrorForm(t *testing.T, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is a %T, want *spec.Error", err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "KOORDINATOR_SPEC: ") {
		t.Errorf("error %q does not start with %q", msg, "KOORDINATOR_SPEC: ")
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error %q is not one line", msg)
	}
}

func TestEverySignal(t *testing.T) {
	for n := 1; n <= 64; n++ {
		sig := syscall.Signal(n)
		_, unfit := unfitToStop[sig]
		for _, in := range []string{strconv.Itoa(n), strconv.Quote(strconv.Itoa(n)), strconv.Quote(SignalName(sig))} {
			if strings.HasPrefix(SignalName(sig), "signal ") && strings.Contains(in, "signal ") {
				continue // real-time signals have no name to parse
			}
			s, err := Parse([]byte(`{"stopSignal":` + in + `}`))
			switch {
			case unfit && err == nil:
				t.Errorf("stopSignal %s accepted, want it rejected", in)
			case !unfit && err != nil:
				t.Errorf("stopSignal %s: %v", in, err)
			case !unfit && s.StopSignal != sig:
				t.Errorf("stopSignal %s = %d, want %d", in, s.StopSignal, n)
			}
		}
	}
}

func TestSignalName(t *testing.T) {
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGTERM: "SIGTERM", syscall.SIGKILL: "SIGKILL", syscall.SIGHUP: "SIGHUP", 16: "SIGSTKFLT",
		29: "SIGIO", 31: "SIGSYS", 34: "signal 34", 64: "signal 64", 0: "signal 0",
	} {
		if got := SignalName(sig); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", sig, got, want)
		}
	}
}

func TestHasDeps(t *testing.T) {
	for in, want := range map[string]bool{
		``: false, `{}`: false, `{"name":"a","stopDelay":"1s"}`: false,
		`{"startDeps":["a"]}`: true, `{"stopDeps":["a"]}`: true, `{"startDeps":[{"file":"/x"}]}`: true,
		`{"api":false,"stopDeps":["a"]}`: true,
	} {
		s, err := Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if s.HasDeps() != want {
			t.Errorf("Parse(%q).HasDeps() = %v, want %v", in, !want, want)
		}
	}
}

func TestNeedsAPI(t *testing.T) {
	for in, want := range map[string]bool{
		``: false, `{"startDeps":[{"file":"/x"}]}`: false, `{"api":false,"stopDeps":["a"]}`: false,
		`{"startDeps":["a"]}`: true, `{"stopDeps":["a"]}`: true,
	} {
		s, err := Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if s.NeedsAPI() != want {
			t.Errorf("Parse(%q).NeedsAPI() = %v, want %v", in, !want, want)
		}
	}
}

func TestMarshalJSON(t *testing.T) {
	got, err := json.Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"startDeps":[],"stopDeps":[],"stopDelay":"0s","startTimeout":"0s","probeInterval":"200ms","stopSignal":"SIGTERM",` +
		`"stopTimeout":"30s","terminatedByStopDepExitCode":0,"killedByStopDepExitCode":137}`
	if string(got) != want {
		t.Errorf("json.Marshal(Default())\n got %s\nwant %s", got, want)
	}

	// A Spec built by hand with nil lists still prints lists.
	got, _ = json.Marshal(Spec{StopSignal: syscall.SIGINT})
	if !strings.Contains(string(got), `"startDeps":[],"stopDeps":[]`) {
		t.Errorf("nil lists marshal as %s", got)
	}

	for _, in := range []string{
		``,
		`{"termSignal":"usr2","termTimeout":"1m30s"}`,
		`{"name":"main","startDeps":["proxy","db"],"stopDeps":["db"],"stopDelay":"1.5s","startTimeout":"90","stopSignal":40,` +
			`"stopTimeout":"0s","terminatedByStopDepExitCode":7,"killedByStopDepExitCode":0}`,
		`{"stopDelay":"2562047h47m16.854775807s"}`,
		`{"stopDelay":"1ns","startTimeout":"3us"}`,
		`{"startDeps":[{"tcp":"[::1]:1"},{"name":"a","optional":true},"b"],"stopDeps":["b",{"name":"c","optional":true}],"probeInterval":"1s"}`,
		`{"stopDeps":["main"],"stopAction":{"http":"POST http://localhost:15000/quitquitquit"}}`,
		`{"api":false,"stopDeps":["main"],"podRestartPolicy":"OnFailure"}`,
		`{"stopDeps":["main"],"restartChild":"Always"}`,
	} {
		s, err := Parse([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(MarshalJSON(%s)) = %v; output was %s", in, err, out)
		}
		if !reflect.DeepEqual(back, s) {
			t.Errorf("round trip of %s via %s\n got %+v\nwant %+v", in, out, back, s)
		}
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Spec
		wantRaw string
		wantErr []string
	}{
		{"unset", map[string]string{}, Default(), "", nil},
		{"empty", map[string]string{EnvVar: ""}, Default(), "", nil},
		{"set", map[string]string{EnvVar: `{"stopDeps":["main"]}`},
			with(func(s *Spec) { s.StopDeps = []string{"main"} }), `{"stopDeps":["main"]}`, nil},
		{"typo only", map[string]string{TypoEnvVar: `{"stopDeps":["main"]}`}, Spec{}, "",
			[]string{"KOORDINATOR_SPEC: not set, but KOOORDINATOR_SPEC (three O's", "rename that variable to KOORDINATOR_SPEC"}},
		{"typo only, empty", map[string]string{TypoEnvVar: ""}, Spec{}, "", []string{"KOOORDINATOR_SPEC"}},
		{"real empty, typo holds the spec", map[string]string{EnvVar: " ", TypoEnvVar: `{"stopDeps":["main"]}`}, Spec{}, " ",
			[]string{"KOORDINATOR_SPEC: is empty, but KOOORDINATOR_SPEC", "holds a spec"}},
		{"both empty", map[string]string{EnvVar: "", TypoEnvVar: ""}, Default(), "", nil},
		{"both set: the real one wins", map[string]string{EnvVar: `{"startDeps":["a"]}`, TypoEnvVar: `{"startDeps":["b"]}`},
			with(func(s *Spec) { s.StartDeps = []string{"a"} }), `{"startDeps":["a"]}`, nil},
		{"invalid", map[string]string{EnvVar: `{"startdeps":["a"]}`}, Spec{}, `{"startdeps":["a"]}`,
			[]string{`did you mean "startDeps"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			s, raw, err := FromEnv(lookup)
			if raw != tt.wantRaw {
				t.Errorf("raw = %q, want %q", raw, tt.wantRaw)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(s, tt.want) {
					t.Errorf("got %+v, want %+v", s, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want an error", s)
			}
			checkErrorForm(t, err)
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error\n  %s\nlacks\n  %s", err, want)
				}
			}
		})
	}
}
