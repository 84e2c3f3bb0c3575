package podlocal

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const (
		started = `"startedAt":"2026-11-22T20:50:00.123456789Z"`
		exited  = `"exitedAt":"2026-11-22T20:50:01.5Z"`
	)
	tests := []struct {
		name    string
		file    string
		content string
		want    State
		wantErr string
	}{
		{"running", "main", `{"container":"main","instance":"i1","state":"running","pid":12,` + started + `}`,
			State{Container: "main", Instance: "i1", Pid: 12, StartedAt: time.Date(2026, 11, 22, 20, 50, 0, 123456789, time.UTC)}, ""},
		{"exited", "main", `{"container":"main","instance":"i1","state":"exited","pid":12,` + started + `,"exitCode":3,` + exited + `}`,
			State{Container: "main", Instance: "i1", Pid: 12, StartedAt: time.Date(2026, 11, 22, 20, 50, 0, 123456789, time.UTC),
				Exited: true, ExitCode: 3, ExitedAt: time.Date(2026, 11, 22, 20, 50, 1, 500000000, time.UTC)}, ""},
		{"exited with 0", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":0,` + exited + `}`,
			State{Container: "main", Instance: "i1", Exited: true, ExitCode: 0, ExitedAt: time.Date(2026, 11, 22, 20, 50, 1, 500000000, time.UTC)}, ""},
		{"exited while terminating, never started", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":143,` + exited + `,"terminating":true}`,
			State{Container: "main", Instance: "i1", Exited: true, ExitCode: 143, ExitedAt: time.Date(2026, 11, 22, 20, 50, 1, 500000000, time.UTC), Terminating: true}, ""},
		{"restarting", "main", `{"container":"main","instance":"i1","state":"restarting","pid":12,` + started + `,"exitCode":1,` + exited + `,"restarts":2}`,
			State{Container: "main", Instance: "i1", Pid: 12, StartedAt: time.Date(2026, 11, 22, 20, 50, 0, 123456789, time.UTC),
				Restarting: true, ExitCode: 1, ExitedAt: time.Date(2026, 11, 22, 20, 50, 1, 500000000, time.UTC), Restarts: 2}, ""},
		{"running after restarts", "main", `{"container":"main","instance":"i1","state":"running","pid":13,` + started + `,"restarts":3}`,
			State{Container: "main", Instance: "i1", Pid: 13, StartedAt: time.Date(2026, 11, 22, 20, 50, 0, 123456789, time.UTC), Restarts: 3}, ""},
		{"unknown fields are allowed", "main", `{"container":"main","instance":"i1","state":"running","pid":12,` + started + `,"future":{"x":1}}`,
			State{Container: "main", Instance: "i1", Pid: 12, StartedAt: time.Date(2026, 11, 22, 20, 50, 0, 123456789, time.UTC)}, ""},

		{"empty", "main", ``, State{}, "not a state file"},
		{"garbage", "main", `garbage`, State{}, "not a state file"},
		{"truncated", "main", `{"container":"main","instance":"i1","state":"exi`, State{}, "not a state file"},
		{"not an object", "main", `["main"]`, State{}, "not a state file"},
		{"null", "main", `null`, State{}, "differs from its name"},
		{"wrong type", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":"0",` + exited + `}`, State{}, "not a state file"},
		{"bad time", "main", `{"container":"main","instance":"i1","state":"running","pid":1,"startedAt":"yesterday"}`, State{}, "not a state file"},
		{"container differs from the file name", "main", `{"container":"proxy","instance":"i1","state":"exited","exitCode":0,` + exited + `}`, State{}, `container field "proxy" differs from its name "main"`},
		{"container missing", "main", `{"instance":"i1","state":"exited","exitCode":0,` + exited + `}`, State{}, "differs from its name"},
		{"file name not a container name", "Main", `{"container":"Main","instance":"i1","state":"exited","exitCode":0,` + exited + `}`, State{}, "not a container name"},
		{"temporary file name", ".main.x.tmp", `{"container":".main.x.tmp","instance":"i1","state":"exited","exitCode":0,` + exited + `}`, State{}, "not a container name"},
		{"instance missing", "main", `{"container":"main","state":"exited","exitCode":0,` + exited + `}`, State{}, "instance"},
		{"instance too long", "main", `{"container":"main","instance":"` + strings.Repeat("x", 65) + `","state":"exited","exitCode":0,` + exited + `}`, State{}, "instance"},
		{"state missing", "main", `{"container":"main","instance":"i1","exitCode":0,` + exited + `}`, State{}, `none of "running", "exited" and "restarting"`},
		{"unknown state", "main", `{"container":"main","instance":"i1","state":"done","exitCode":0,` + exited + `}`, State{}, `none of "running", "exited" and "restarting"`},
		{"exited without code", "main", `{"container":"main","instance":"i1","state":"exited",` + exited + `}`, State{}, "needs exitCode"},
		{"exited without time", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":0}`, State{}, "needs exitCode"},
		{"exit code too large", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":256,` + exited + `}`, State{}, "needs exitCode"},
		{"negative exit code", "main", `{"container":"main","instance":"i1","state":"exited","exitCode":-1,` + exited + `}`, State{}, "needs exitCode"},
		{"running with an exit code", "main", `{"container":"main","instance":"i1","state":"running","pid":1,` + started + `,"exitCode":0}`, State{}, `"running" needs`},
		{"running without pid", "main", `{"container":"main","instance":"i1","state":"running"}`, State{}, `"running" needs`},
		{"pid without startedAt", "main", `{"container":"main","instance":"i1","state":"exited","pid":3,"exitCode":0,` + exited + `}`, State{}, "together"},
		{"restarting without pid", "main", `{"container":"main","instance":"i1","state":"restarting","exitCode":1,` + exited + `}`, State{}, `"restarting" needs the pid`},
		{"restarting without code", "main", `{"container":"main","instance":"i1","state":"restarting","pid":1,` + started + `,` + exited + `}`, State{}, "needs exitCode"},
		{"negative restarts", "main", `{"container":"main","instance":"i1","state":"running","pid":1,` + started + `,"restarts":-1}`, State{}, "negative restarts"},
		{"negative pid", "main", `{"container":"main","instance":"i1","state":"running","pid":-3,` + started + `}`, State{}, "negative pid"},
		{"too large", "main", `{"container":"main","instance":"i1","state":"running","pid":1,` + started + `,"pad":"` + strings.Repeat(" ", MaxFileSize) + `"}`, State{}, "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.file, []byte(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !got.StartedAt.Equal(tt.want.StartedAt) || !got.ExitedAt.Equal(tt.want.ExitedAt) {
				t.Fatalf("times: got %v/%v, want %v/%v", got.StartedAt, got.ExitedAt, tt.want.StartedAt, tt.want.ExitedAt)
			}
			got.StartedAt, got.ExitedAt, tt.want.StartedAt, tt.want.ExitedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("Parse = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	start := time.Date(2026, 11, 22, 20, 50, 0, 1, time.FixedZone("CET", 3600))
	for _, s := range []State{
		{Container: "main", Instance: "i", Pid: 7, StartedAt: start},
		{Container: "main", Instance: "i", Pid: 7, StartedAt: start, Exited: true, ExitCode: 0, ExitedAt: start.Add(time.Second)},
		{Container: "db-proxy", Instance: "i", Exited: true, ExitCode: 143, ExitedAt: start, Terminating: true},
	} {
		b, err := Marshal(s)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", s, err)
		}
		if !strings.Contains(string(b), `"startedAt":"2026-11-22T19:50:00.000000001Z"`) && s.Pid != 0 {
			t.Errorf("times are not UTC RFC 3339 with nanoseconds: %s", b)
		}
		got, err := Parse(s.Container, b)
		if err != nil {
			t.Fatalf("Parse(Marshal(%+v)) = %v\n%s", s, err, b)
		}
		if got.Exited != s.Exited || got.ExitCode != s.ExitCode || got.Pid != s.Pid || got.Terminating != s.Terminating ||
			!got.StartedAt.Equal(s.StartedAt) || !got.ExitedAt.Equal(s.ExitedAt) {
			t.Errorf("round trip: got %+v, want %+v", got, s)
		}
	}
	if _, err := Marshal(State{Container: "main", Instance: "i"}); err == nil {
		t.Error("Marshal accepted a running state without pid")
	}
	if _, err := Marshal(State{Container: "Main", Instance: "i", Exited: true, ExitedAt: start}); err == nil {
		t.Error("Marshal accepted an invalid container name")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("main", []byte(`{"container":"main","instance":"i1","state":"exited","exitCode":0,"exitedAt":"2026-11-22T20:50:01Z"}`))
	f.Add("main", []byte(`{"container":"main","instance":"i1","state":"running","pid":1,"startedAt":"2026-11-22T20:50:01Z"}`))
	f.Add("x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		s, err := Parse(name, b)
		if err != nil {
			return
		}
		if s.Container != name {
			t.Fatalf("accepted a file for %q under the name %q", s.Container, name)
		}
		if s.Exited && (s.ExitCode < 0 || s.ExitCode > 255) {
			t.Fatalf("accepted exit code %d", s.ExitCode)
		}
		again, err := Marshal(s)
		if err != nil {
			t.Fatalf("Marshal of a parsed state failed: %v", err)
		}
		if _, err := Parse(name, again); err != nil {
			t.Fatalf("re-Parse failed: %v\n%s", err, again)
		}
	})
}
