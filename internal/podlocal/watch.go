package podlocal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/koordinator-dev/koordinator/internal/latest"
	"github.com/koordinator-dev/koordinator/internal/spec"
)

// DefaultPollInterval is how often the watcher rereads the state files on top of inotify, and
// the only way it learns of changes when inotify is unavailable.
const DefaultPollInterval = 2 * time.Second

// Options tune Watch; the zero value is what koordinator uses.
type Options struct {
	PollInterval time.Duration // 0: DefaultPollInterval
	NoInotify    bool          // poll only (inotify being unavailable is detected by itself)
}

// Warning is a state file (or the .state folder, Name "") that was ignored, and why. The same
// problem with an unchanged file is reported once.
type Warning struct {
	Name string
	Err  error
}

func (w Warning) Error() string {
	if w.Name == "" {
		return fmt.Sprintf("state folder: %v", w.Err)
	}
	return fmt.Sprintf("state file %q: %v", w.Name, w.Err)
}

// Watcher delivers the states of a set of containers as their wrappers publish them.
type Watcher struct {
	updates  chan map[string]State
	warnings chan Warning
	done     chan struct{}
	inotify  bool
}

// Updates delivers the latest states of the watched containers, one map per change: a name is
// present while its file holds a valid state. A map not yet taken is replaced by a newer one, so
// the latest always wins. The maps are the receiver's.
func (w *Watcher) Updates() <-chan map[string]State { return w.updates }

// Warnings delivers the files that were ignored (malformed, a symlink, too large, not a regular
// file, naming another container). Warnings are dropped when the reader lags far behind.
func (w *Watcher) Warnings() <-chan Warning { return w.warnings }

// Done is closed once the watcher has stopped after its context ended.
func (w *Watcher) Done() <-chan struct{} { return w.done }

// Inotify reports whether inotify is in use; false means the poll alone finds changes.
func (w *Watcher) Inotify() bool { return w.inotify }

// inotifyMask: a file closed after writing, renamed in, created, deleted or renamed away, and
// the folder itself going away. IN_ONLYDIR|IN_DONT_FOLLOW refuse a .state that is a symlink.
const inotifyMask = syscall.IN_CLOSE_WRITE | syscall.IN_MOVED_TO | syscall.IN_CREATE | syscall.IN_DELETE |
	syscall.IN_MOVED_FROM | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR | syscall.IN_DONT_FOLLOW

// Watch watches folder/.state (creating it when missing) for the state files of names, until
// ctx is done. It starts watching before it reads what is there, and returns once that first
// read has been delivered on Updates, so every later change is seen. It never fails: without
// inotify, or without the folder, it polls (and keeps trying to set inotify up again).
func Watch(ctx context.Context, folder string, names []string, opt Options) *Watcher {
	if opt.PollInterval <= 0 {
		opt.PollInterval = DefaultPollInterval
	}
	out := &Watcher{updates: make(chan map[string]State, 1), warnings: make(chan Warning, 16), done: make(chan struct{})}
	w := &watcher{
		out: out, folder: folder, dir: Dir(folder), inoFD: -1,
		cur: map[string]State{}, raw: map[string][]byte{}, warned: map[string]string{},
	}
	for _, n := range names {
		if spec.IsContainerName(n) && !slices.Contains(w.names, n) {
			w.names = append(w.names, n)
		}
	}
	if err := ensureDir(folder); err != nil {
		w.warn("", "", err)
	}
	if !opt.NoInotify {
		w.startInotify()
	}
	out.inotify = w.ino != nil
	w.scan(w.names)
	latest.Offer(out.updates, maps.Clone(w.cur))

	events := make(chan inotifyEvents)
	if w.ino != nil {
		go readInotify(ctx, w.ino, events)
	}
	go w.loop(ctx, events, opt.PollInterval)
	return out
}

// watcher is the state of one Watch, owned by its loop goroutine (and by Watch before that).
type watcher struct {
	out    *Watcher
	folder string
	dir    string
	names  []string

	ino       *os.File // the inotify instance, nil when polling only
	inoFD     int
	wd        int32  // the current watch on dir
	watching  bool   // the inotify watch on dir is in place
	inoWarned string // the last inotify problem reported

	cur    map[string]State
	raw    map[string][]byte // the bytes behind cur, to tell a change
	warned map[string]string // per name, the last warning's key (file identity and message)
}

func (w *watcher) startInotify() {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		w.warn("", "", fmt.Errorf("inotify unavailable, polling every few seconds: %w", err))
		return
	}
	// A non-blocking descriptor makes the os.File pollable: Read parks the goroutine, and Close
	// wakes it.
	w.ino, w.inoFD = os.NewFile(uintptr(fd), "inotify"), fd
	w.addWatch()
}

func (w *watcher) addWatch() {
	wd, err := syscall.InotifyAddWatch(w.inoFD, w.dir, inotifyMask)
	switch {
	case err == nil:
		w.wd, w.watching, w.inoWarned = int32(wd), true, ""
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
		// No folder, or not a real one: the scan reports that.
	case err.Error() != w.inoWarned: // e.g. ENOSPC, the watch limit
		w.inoWarned = err.Error()
		w.send(Warning{Err: fmt.Errorf("cannot watch %s with inotify, polling: %w", w.dir, err)})
	}
}

func (w *watcher) loop(ctx context.Context, events <-chan inotifyEvents, every time.Duration) {
	defer close(w.out.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		changed := false
		select {
		case <-ctx.Done():
			if w.ino != nil {
				_ = w.ino.Close()
			}
			return
		case ev := <-events:
			switch {
			case ev.failed:
				_ = w.ino.Close()
				w.ino, w.watching = nil, false
				changed = w.scan(w.names)
			case len(ev.lost) > 0:
				// The folder went away or was moved: drop the watch; the poll sets a new one up.
				// (An IN_IGNORED for a watch dropped earlier says nothing about the current one.)
				if w.watching && slices.Contains(ev.lost, w.wd) {
					_, _ = syscall.InotifyRmWatch(w.inoFD, uint32(w.wd))
					w.watching = false
				}
				changed = w.scan(w.names)
			case ev.rescan:
				changed = w.scan(w.names)
			default:
				changed = w.scan(slices.DeleteFunc(ev.names, func(n string) bool { return !slices.Contains(w.names, n) }))
			}
		case <-tick.C:
			if w.ino != nil && !w.watching { // the folder was gone or replaced: watch anew
				if err := ensureDir(w.folder); err != nil {
					w.warn("", "", err)
				}
				w.addWatch()
			}
			changed = w.scan(w.names)
		}
		if changed {
			latest.Offer(w.out.updates, maps.Clone(w.cur))
		}
	}
}

// scan rereads the files of names and reports whether any state changed.
func (w *watcher) scan(names []string) bool {
	changed := false
	dfd, err := openDir(w.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.warn("", "", err)
		}
		for _, n := range names {
			changed = w.set(n, nil, State{}) || changed
		}
		return changed
	}
	defer syscall.Close(dfd)
	delete(w.warned, "")
	for _, n := range names {
		b, err := readAt(dfd, n)
		if errors.Is(err, fs.ErrNotExist) {
			delete(w.warned, n)
			changed = w.set(n, nil, State{}) || changed
			continue
		}
		var st State
		if err == nil {
			st, err = Parse(n, b)
		}
		if err != nil {
			w.warn(n, w.identity(n), err)
			changed = w.set(n, nil, State{}) || changed
			continue
		}
		delete(w.warned, n)
		changed = w.set(n, b, st) || changed
	}
	return changed
}

// set records name's state (b nil: no valid state) and reports whether it changed.
func (w *watcher) set(name string, b []byte, st State) bool {
	old, had := w.raw[name]
	if b == nil {
		delete(w.raw, name)
		delete(w.cur, name)
		return had
	}
	if had && string(old) == string(b) {
		return false
	}
	w.raw[name], w.cur[name] = b, st
	return true
}

// identity names the file at this moment (inode, size, change time), so that an unchanged bad
// file is reported once and a changed one again.
func (w *watcher) identity(name string) string {
	fi, err := os.Lstat(filepath.Join(w.dir, name))
	if err != nil {
		return ""
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d/%d/%d.%d", st.Ino, st.Size, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime().String()
}

// warn reports a problem unless the same one was reported for the same file.
func (w *watcher) warn(name, identity string, err error) {
	key := identity + "|" + err.Error()
	if w.warned[name] == key {
		return
	}
	w.warned[name] = key
	w.send(Warning{Name: name, Err: err})
}

func (w *watcher) send(warning Warning) {
	select {
	case w.out.warnings <- warning:
	default:
	}
}

// errSymlink is a state file that is a symlink: never followed.
var errSymlink = errors.New("is a symlink; state files are never followed through symlinks")

// readAt reads the state file name in the folder dfd, without following a symlink, refusing
// anything but a regular file of at most MaxFileSize bytes. O_NONBLOCK keeps a FIFO planted
// there from blocking the open.
func readAt(dfd int, name string) ([]byte, error) {
	fd, err := syscall.Openat(dfd, name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return nil, fs.ErrNotExist
	case errors.Is(err, syscall.ELOOP):
		return nil, errSymlink
	case err != nil:
		return nil, err
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, errors.New("not a regular file")
	}
	if st.Size > MaxFileSize {
		return nil, fmt.Errorf("%d bytes, more than the %d a state file has", st.Size, MaxFileSize)
	}
	buf := make([]byte, MaxFileSize+1)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > MaxFileSize {
		return nil, fmt.Errorf("more than the %d bytes a state file has", MaxFileSize)
	}
	return buf[:n], nil
}

// inotifyEvents is what one read of the inotify instance says.
type inotifyEvents struct {
	names  []string // files that changed
	rescan bool     // the kernel's queue overflowed: events were lost
	lost   []int32  // watches whose folder was deleted or moved away, or that were removed
	failed bool     // reading inotify failed: poll from now on
}

// readInotify is the one goroutine that reads the inotify instance; it hands what it read to
// the watcher's loop and ends when ino is closed or ctx is done.
func readInotify(ctx context.Context, ino *os.File, out chan<- inotifyEvents) {
	buf := make([]byte, 64*1024)
	for {
		n, err := ino.Read(buf)
		var ev inotifyEvents
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			ev.failed = true
		} else {
			ev = parseEvents(buf[:n])
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return
		}
		if ev.failed {
			return
		}
	}
}

// parseEvents decodes a buffer of struct inotify_event records (native byte order).
func parseEvents(b []byte) inotifyEvents {
	var ev inotifyEvents
	for len(b) >= syscall.SizeofInotifyEvent {
		wd := int32(binary.NativeEndian.Uint32(b[0:4]))
		mask := binary.NativeEndian.Uint32(b[4:8])
		size := int(binary.NativeEndian.Uint32(b[12:16]))
		end := syscall.SizeofInotifyEvent + size
		if end > len(b) {
			ev.rescan = true // cannot happen with a whole read; be safe
			break
		}
		name := string(b[syscall.SizeofInotifyEvent:end])
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		b = b[end:]
		switch {
		case mask&syscall.IN_Q_OVERFLOW != 0:
			ev.rescan = true
		case mask&(syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF|syscall.IN_IGNORED) != 0:
			if !slices.Contains(ev.lost, wd) {
				ev.lost = append(ev.lost, wd)
			}
		case name != "" && !slices.Contains(ev.names, name):
			ev.names = append(ev.names, name)
		}
	}
	return ev
}
