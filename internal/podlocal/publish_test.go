package podlocal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func readState(t *testing.T, folder, name string) State {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(folder), name))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(name, b)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, b)
	}
	return s
}

func TestPublishStartedThenExited(t *testing.T) {
	old := syscall.Umask(0o077) // the modes must not depend on the umask
	defer syscall.Umask(old)
	folder := t.TempDir()
	p, err := NewPublisher(folder, "main")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(Dir(folder)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("NewPublisher touched the disk: %v", err)
	}
	start := time.Now()
	if err := p.Started(4242, start); err != nil {
		t.Fatal(err)
	}
	s := readState(t, folder, "main")
	if s.Exited || s.Pid != 4242 || !s.StartedAt.Equal(start) || s.Instance != p.Instance() || s.Instance == "" {
		t.Errorf("after Started: %+v", s)
	}
	if err := p.Exited(3, start.Add(time.Second), true); err != nil {
		t.Fatal(err)
	}
	s = readState(t, folder, "main")
	if !s.Exited || s.ExitCode != 3 || s.Pid != 4242 || !s.Terminating || !s.ExitedAt.Equal(start.Add(time.Second)) {
		t.Errorf("after Exited: %+v", s)
	}

	fi, err := os.Lstat(p.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 {
		t.Errorf("state file mode %v, want -rw-r--r--", fi.Mode())
	}
	di, err := os.Lstat(Dir(folder))
	if err != nil {
		t.Fatal(err)
	}
	if want := os.ModeDir | os.ModeSticky | 0o777; di.Mode() != want {
		t.Errorf(".state mode %v, want %v", di.Mode(), want)
	}
	entries, _ := os.ReadDir(Dir(folder))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if q, _ := NewPublisher(folder, "main"); q.Instance() == p.Instance() {
		t.Error("two publishers got the same instance id")
	}
}

func TestPublishNeverStarted(t *testing.T) {
	folder := t.TempDir()
	p, _ := NewPublisher(folder, "main")
	if err := p.Exited(143, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	if s := readState(t, folder, "main"); !s.Exited || s.ExitCode != 143 || s.Pid != 0 || !s.StartedAt.IsZero() {
		t.Errorf("got %+v", s)
	}
}

func TestPublishKeepsAnExistingFolder(t *testing.T) {
	folder := t.TempDir()
	if err := os.Mkdir(Dir(folder), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(Dir(folder), 0o750); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPublisher(folder, "main")
	if err := p.Started(1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if di, _ := os.Lstat(Dir(folder)); di.Mode().Perm() != 0o750 {
		t.Errorf("an existing .state changed mode to %v", di.Mode())
	}
}

func TestPublishRefusesASymlinkedFolder(t *testing.T) {
	folder, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, Dir(folder)); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPublisher(folder, "main")
	err := p.Started(1, time.Now())
	if !errors.Is(err, ErrNotDir) {
		t.Fatalf("Started through a symlinked .state: %v, want ErrNotDir", err)
	}
	if entries, _ := os.ReadDir(elsewhere); len(entries) != 0 {
		t.Errorf("wrote through the symlink: %v", entries)
	}
}

func TestPublishReplacesASymlinkInsteadOfFollowingIt(t *testing.T) {
	folder := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(Dir(folder), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(Dir(folder), "main")); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPublisher(folder, "main")
	// A symlink where the temporary file goes is not followed either.
	if err := os.Symlink(victim, filepath.Join(Dir(folder), ".main."+p.Instance()+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := p.Started(1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the symlink's target was written: %q", b)
	}
	fi, err := os.Lstat(p.Path())
	if err != nil || !fi.Mode().IsRegular() {
		t.Errorf("state file is not a regular file: %v %v", fi, err)
	}
	readState(t, folder, "main")
}

// A reader never sees a partial file: every read finds nothing or a whole, valid state.
func TestPublishIsAtomic(t *testing.T) {
	folder := t.TempDir()
	p, _ := NewPublisher(folder, "main")
	if err := p.Started(1, time.Now()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bad []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(p.Path())
			if err != nil {
				bad = append(bad, err.Error())
				continue
			}
			if _, err := Parse("main", b); err != nil {
				bad = append(bad, err.Error()+": "+string(b))
			}
		}
	}()
	for i := 0; i < 300; i++ {
		var err error
		if i%2 == 0 {
			err = p.Started(i+1, time.Now())
		} else {
			err = p.Exited(i%256, time.Now(), false)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d bad reads, first: %s", len(bad), strings.Join(bad[:1], ""))
	}
	// Each swap's old content was removed: nothing but the state file is left.
	entries, err := os.ReadDir(Dir(folder))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "main" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the state folder holds %q, want only main", names)
	}
}

func TestNewPublisherRefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "Main", "../etc", "a/b", ".state", strings.Repeat("a", 64)} {
		if _, err := NewPublisher(t.TempDir(), name); err == nil {
			t.Errorf("NewPublisher accepted %q", name)
		}
	}
}
