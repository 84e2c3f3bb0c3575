package spec

import (
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error keeps its promised form, and that
// every accepted spec survives MarshalJSON and Parse unchanged (what `koordinator --check` prints
// is a spec that means the same).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		``, ` `, `{}`, `[]`, `null`, `"x"`, `{"a":1}`, `{} {}`, `{"startDeps":["a"]`,
		`{"startDeps":["cloud-sql-proxy"]}`,
		`{"stopDeps":["main"],"stopDelay":"10s"}`,
		`{"name":"main","startDeps":["proxy","db"],"stopDeps":["db"],"stopDelay":"1m30s","startTimeout":"5m",` +
			`"stopSignal":"SIGINT","stopTimeout":"0s","terminatedByStopDepExitCode":1,"killedByStopDepExitCode":255}`,
		`{"termSignal":"usr1","termTimeout":"45"}`,
		`{"stopSignal":40}`, `{"stopSignal":"19"}`, `{"stopSignal":"TREM"}`,
		`{"stopDelay":10}`, `{"stopDelay":"-1s"}`, `{"stopDelay":"1.5h"}`, `{"stopDelay":"99999999999999999999"}`,
		`{"startdeps":["a"]}`, `{"stop_deps":["a"]}`, `{"stopDelay":"1s","stopDelay":"2s"}`,
		`{"stopSignal":"TERM","termSignal":"INT"}`, `{"name":"a","stopDeps":["a"]}`,
		`{"startDeps":[{"name":"a","optional":true},{"tcp":"127.0.0.1:5432"},{"http":"http://x/"},{"file":"/r"}],"stopDeps":["b"]}`,
		`{"startDeps":[{"nmae":"a"}]}`, `{"api":false,"stopDeps":["m"],"podRestartPolicy":"OnFailure"}`, `{"api":false,"startDeps":["p"]}`, `{"stopAction":{"http":"POST http://127.0.0.1:15020/quitquitquit"}}`, `{"stopAction":{"http":"GET http://1.2.3.4/"}}`, `{"stopDeps":[{"file":"/x"}]}`, `{"probeInterval":"5ms"}`,
		`{"killedByStopDepExitCode":-1}`, `{"startDeps":["Main",""]}`, "{\"x\n\":\"\\u0000\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			checkErrorForm(t, err)
			return
		}
		if s.StartDeps == nil || s.StopDeps == nil {
			t.Fatalf("Parse(%q) left a nil list", data)
		}
		out, err := s.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%+v): %v", s, err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) accepted, but its MarshalJSON %s fails: %v", data, out, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip of %q via %s\n got %+v\nwant %+v", data, out, back, s)
		}
	})
}
