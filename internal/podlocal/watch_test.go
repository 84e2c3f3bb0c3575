package podlocal

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const deadline = 30 * time.Second

func watchFor(t *testing.T, folder string, opt Options, names ...string) *Watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := Watch(ctx, folder, names, opt)
	t.Cleanup(func() { cancel(); <-w.Done() }) // before the temporary folders go
	return w
}

// next waits for an update that satisfies cond and returns it.
func next(t *testing.T, w *Watcher, what string, cond func(map[string]State) bool) map[string]State {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case m := <-w.Updates():
			if cond(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func nextWarning(t *testing.T, w *Watcher, name, contains string) Warning {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case warn := <-w.Warnings():
			if warn.Name == name && strings.Contains(warn.Err.Error(), contains) {
				return warn
			}
			t.Logf("other warning: %v", warn)
		case <-timeout:
			t.Fatalf("timed out waiting for a warning about %q containing %q", name, contains)
		}
	}
}

func exitedWith(name string, code int) func(map[string]State) bool {
	return func(m map[string]State) bool { s, ok := m[name]; return ok && s.Exited && s.ExitCode == code }
}

func publish(t *testing.T, folder, name string, code int) {
	t.Helper()
	p, err := NewPublisher(folder, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Started(100, time.Now()); err != nil {
		t.Fatal(err)
	}
	if code >= 0 {
		if err := p.Exited(code, time.Now(), false); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRaw puts content at .state/name the way a careless writer would: in place.
func writeRaw(t *testing.T, folder, name, content string) {
	t.Helper()
	if err := os.MkdirAll(Dir(folder), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(Dir(folder), name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchReadsWhatWasWrittenBefore(t *testing.T) {
	folder := t.TempDir()
	publish(t, folder, "main", 7)
	publish(t, folder, "other", 0)
	w := watchFor(t, folder, Options{PollInterval: time.Hour}, "main")
	select {
	case m := <-w.Updates():
		if s, ok := m["main"]; !ok || !s.Exited || s.ExitCode != 7 {
			t.Errorf("first update %+v, want main exited 7", m)
		}
		if _, ok := m["other"]; ok {
			t.Error("delivered a container nobody asked for")
		}
	default:
		t.Fatal("Watch returned before delivering what was there")
	}
}

func TestWatchInotifyDeliversAChange(t *testing.T) {
	folder := t.TempDir()
	w := watchFor(t, folder, Options{PollInterval: time.Hour}, "main") // the poll never runs
	if !w.Inotify() {
		t.Skip("inotify unavailable here")
	}
	first := <-w.Updates()
	if len(first) != 0 {
		t.Fatalf("first update %v, want empty", first)
	}
	publish(t, folder, "other", 0)
	publish(t, folder, "main", -1)
	next(t, w, "main running", func(m map[string]State) bool { s, ok := m["main"]; return ok && !s.Exited })
	p, _ := NewPublisher(folder, "main")
	_ = p.Started(5, time.Now())
	_ = p.Exited(0, time.Now(), false)
	next(t, w, "main exited 0", exitedWith("main", 0))

	// Removed: no state.
	if err := os.Remove(p.Path()); err != nil {
		t.Fatal(err)
	}
	next(t, w, "main gone", func(m map[string]State) bool { _, ok := m["main"]; return !ok })
}

func TestWatchPollAlone(t *testing.T) {
	folder := t.TempDir()
	w := watchFor(t, folder, Options{NoInotify: true, PollInterval: 10 * time.Millisecond}, "main", "report")
	if w.Inotify() {
		t.Fatal("inotify in use although disabled")
	}
	<-w.Updates()
	publish(t, folder, "report", 2)
	next(t, w, "report exited 2", exitedWith("report", 2))
	publish(t, folder, "main", 0)
	m := next(t, w, "main exited 0", exitedWith("main", 0))
	if !m["report"].Exited {
		t.Errorf("an update lost report: %+v", m)
	}
}

func TestWatchRecoversWhenTheFolderIsRecreated(t *testing.T) {
	for _, how := range []string{"deleted", "moved away"} {
		t.Run(how, func(t *testing.T) {
			folder := t.TempDir()
			publish(t, folder, "main", 1)
			w := watchFor(t, folder, Options{PollInterval: 10 * time.Millisecond}, "main")
			<-w.Updates()
			var err error
			if how == "deleted" {
				err = os.RemoveAll(Dir(folder))
			} else {
				err = os.Rename(Dir(folder), filepath.Join(folder, "old"))
			}
			if err != nil {
				t.Fatal(err)
			}
			next(t, w, "main gone with the folder", func(m map[string]State) bool { _, ok := m["main"]; return !ok })
			publish(t, folder, "main", 4) // recreates .state
			next(t, w, "main exited 4", exitedWith("main", 4))
			if !w.Inotify() {
				return
			}
			// The watch is back: a change arrives (the poll may be the one to see it; both work).
			publish(t, folder, "main", 5)
			next(t, w, "main exited 5", exitedWith("main", 5))
		})
	}
}

func TestWatchIgnoresBadFiles(t *testing.T) {
	valid := func(name string) string {
		b, _ := Marshal(State{Container: name, Instance: "x", Exited: true, ExitCode: 0, ExitedAt: time.Now()})
		return string(b)
	}
	tests := []struct {
		name    string
		plant   func(t *testing.T, folder string)
		warning string
	}{
		{"garbage", func(t *testing.T, folder string) { writeRaw(t, folder, "main", "garbage") }, "not a state file"},
		{"empty", func(t *testing.T, folder string) { writeRaw(t, folder, "main", "") }, "not a state file"},
		{"another container's state", func(t *testing.T, folder string) { writeRaw(t, folder, "main", valid("proxy")) }, "differs from its name"},
		{"oversized", func(t *testing.T, folder string) {
			writeRaw(t, folder, "main", valid("main")[:20]+strings.Repeat(" ", MaxFileSize)+valid("main")[20:])
		}, "more than"},
		{"symlink to a valid state", func(t *testing.T, folder string) {
			target := filepath.Join(t.TempDir(), "main")
			if err := os.WriteFile(target, []byte(valid("main")), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(Dir(folder), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(Dir(folder), "main")); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"a FIFO", func(t *testing.T, folder string) {
			if err := os.MkdirAll(Dir(folder), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mkfifo(filepath.Join(Dir(folder), "main"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		{"a directory", func(t *testing.T, folder string) {
			if err := os.MkdirAll(filepath.Join(Dir(folder), "main"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		for _, mode := range []struct {
			name string
			opt  Options
		}{{"inotify", Options{PollInterval: time.Hour}}, {"poll", Options{NoInotify: true, PollInterval: 10 * time.Millisecond}}} {
			t.Run(tt.name+"/"+mode.name, func(t *testing.T) {
				// Planted before the watch starts...
				folder := t.TempDir()
				tt.plant(t, folder)
				w := watchFor(t, folder, mode.opt, "main")
				if m := <-w.Updates(); len(m) != 0 {
					t.Errorf("a bad file gave a state: %+v", m)
				}
				nextWarning(t, w, "main", tt.warning)

				// ...and after: a valid state replaced by the bad file is no state at all.
				folder = t.TempDir()
				publish(t, folder, "main", 0)
				w = watchFor(t, folder, mode.opt, "main")
				if m := <-w.Updates(); !m["main"].Exited {
					t.Fatalf("valid state not read: %+v", m)
				}
				if err := os.Remove(filepath.Join(Dir(folder), "main")); err != nil {
					t.Fatal(err)
				}
				tt.plant(t, folder)
				nextWarning(t, w, "main", tt.warning)
				next(t, w, "no state for main", func(m map[string]State) bool { _, ok := m["main"]; return !ok })
			})
		}
	}
}

func TestWatchRefusesASymlinkedFolder(t *testing.T) {
	folder, elsewhere := t.TempDir(), t.TempDir()
	publish(t, elsewhere, "main", 0)
	if err := os.Symlink(Dir(elsewhere), Dir(folder)); err != nil {
		t.Fatal(err)
	}
	w := watchFor(t, folder, Options{PollInterval: 10 * time.Millisecond}, "main")
	if m := <-w.Updates(); len(m) != 0 {
		t.Errorf("read through a symlinked .state: %+v", m)
	}
	nextWarning(t, w, "", "symlink")
}

// An unchanged bad file is reported once however often it is read; a changed one again.
func TestWatchWarnsOncePerBadFile(t *testing.T) {
	folder := t.TempDir()
	writeRaw(t, folder, "main", "garbage")
	w := &watcher{out: &Watcher{updates: make(chan map[string]State, 1), warnings: make(chan Warning, 16), done: make(chan struct{})},
		folder: folder, dir: Dir(folder), names: []string{"main"}, inoFD: -1,
		cur: map[string]State{}, raw: map[string][]byte{}, warned: map[string]string{}}
	for i := 0; i < 5; i++ {
		w.scan(w.names)
	}
	if n := len(w.out.warnings); n != 1 {
		t.Fatalf("%d warnings for one unchanged bad file, want 1", n)
	}
	writeRaw(t, folder, "main", "other garbage")
	w.scan(w.names)
	w.scan(w.names)
	if n := len(w.out.warnings); n != 2 {
		t.Fatalf("%d warnings after the file changed, want 2", n)
	}
	publish(t, folder, "main", 0)
	w.scan(w.names)
	writeRaw(t, folder, "main", "garbage")
	w.scan(w.names)
	if n := len(w.out.warnings); n != 3 {
		t.Fatalf("%d warnings after garbage came back, want 3", n)
	}
}

func TestParseEvents(t *testing.T) {
	event := func(wd int32, mask uint32, name string) []byte {
		padded := len(name)
		if padded > 0 {
			padded = (len(name)/16 + 1) * 16
		}
		b := make([]byte, syscall.SizeofInotifyEvent+padded)
		binary.NativeEndian.PutUint32(b[0:], uint32(wd))
		binary.NativeEndian.PutUint32(b[4:], mask)
		binary.NativeEndian.PutUint32(b[12:], uint32(padded))
		copy(b[syscall.SizeofInotifyEvent:], name)
		return b
	}
	var buf []byte
	buf = append(buf, event(1, syscall.IN_CREATE, ".main.x.tmp")...)
	buf = append(buf, event(1, syscall.IN_MOVED_TO, "main")...)
	buf = append(buf, event(1, syscall.IN_CLOSE_WRITE, "main")...)
	buf = append(buf, event(1, syscall.IN_DELETE, "report")...)
	ev := parseEvents(buf)
	if strings.Join(ev.names, ",") != ".main.x.tmp,main,report" || ev.rescan || len(ev.lost) > 0 {
		t.Errorf("got %+v", ev)
	}
	if ev := parseEvents(event(-1, syscall.IN_Q_OVERFLOW, "")); !ev.rescan {
		t.Errorf("overflow: got %+v", ev)
	}
	if ev := parseEvents(append(event(3, syscall.IN_DELETE_SELF, ""), event(3, syscall.IN_IGNORED, "")...)); len(ev.lost) != 1 || ev.lost[0] != 3 {
		t.Errorf("folder deleted: got %+v", ev)
	}
	if ev := parseEvents(event(1, syscall.IN_CREATE, "main")[:20]); !ev.rescan {
		t.Errorf("truncated buffer: got %+v", ev)
	}
}
