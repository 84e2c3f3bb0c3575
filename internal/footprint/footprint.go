// Package footprint keeps what koordinator's own executable costs in time and memory down, at
// the two ends of start-up:
//
//   - At process start (this package's init), it maps the executable's code and read-only data
//     in one madvise(MADV_POPULATE_READ) call instead of hundreds of page faults spread over
//     the package initialisation of client-go and its dependencies.
//   - Once the wrapper has settled into watching, Release unmaps those pages again: start-up
//     touched most of the binary (package inits, client set-up, TLS, the first list), and they
//     would otherwise stay in the resident set although a waiting wrapper runs a small part of
//     it. The pages stay in the page cache, shared by every wrapper running the same file, and
//     fault back in, in microseconds, when the code runs again.
//
// Only read-only mappings of the executable are touched: dropping a writable one would lose
// data. The package imports nothing but syscall, so its init runs among the first.
package footprint

import "syscall"

// madvPopulateRead is MADV_POPULATE_READ (Linux 5.14); older kernels answer EINVAL, and then
// the pages simply fault in as they are used.
const madvPopulateRead = 22

func init() {
	_, _ = eachCodeMapping(madvPopulateRead)
}

// Release unmaps the executable's read-only pages from this process (they stay cached and
// fault back in when used) and returns how many bytes of mappings that covered. Call it once
// start-up is over; pair it with debug.FreeOSMemory for the heap.
func Release() (int, error) {
	// First no huge pages: a binary written in one piece sits in the page cache in 2 MB folios,
	// and a fault would map a whole one back (measured: 12 of 13 MB mapped that way again
	// seconds after the release). Then the pages themselves.
	if _, err := eachCodeMapping(syscall.MADV_NOHUGEPAGE); err != nil {
		return 0, err
	}
	return eachCodeMapping(syscall.MADV_DONTNEED)
}

// eachCodeMapping applies advice to every read-only mapping of the executable and returns the
// bytes they span.
func eachCodeMapping(advice int) (int, error) {
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		return 0, &Error{"find own executable", err}
	}
	maps, err := readFile("/proc/self/maps")
	if err != nil {
		return 0, &Error{"read own mappings", err}
	}
	var total int
	for len(maps) > 0 {
		line := maps
		if i := indexByte(maps, '\n'); i >= 0 {
			line, maps = maps[:i], maps[i+1:]
		} else {
			maps = nil
		}
		m, ok := parseMapping(line)
		if !ok || m.writable || m.inode != exe.Ino {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice)); errno != 0 {
			return total, &Error{"madvise", errno}
		}
		total += int(m.end - m.start)
	}
	return total, nil
}

// readFile reads a whole /proc file (its size is not known in advance).
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 8192)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return nil, err
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// Error is a failed step; it wraps the system call's error. (fmt would make this package's
// init run late.)
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end uintptr
	writable   bool
	inode      uint64
}

// parseMapping reads "start-end perms offset dev inode [path]"; ok is false for a line without
// that shape.
func parseMapping(line []byte) (mapping, bool) {
	var f [5][]byte
	for i := range f {
		for len(line) > 0 && line[0] == ' ' {
			line = line[1:]
		}
		end := indexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		if end == 0 {
			return mapping{}, false
		}
		f[i], line = line[:end], line[end:]
	}
	dash := indexByte(f[0], '-')
	if dash < 0 {
		return mapping{}, false
	}
	start, ok1 := parseUint(f[0][:dash], 16)
	end, ok2 := parseUint(f[0][dash+1:], 16)
	inode, ok3 := parseUint(f[4], 10)
	if !ok1 || !ok2 || !ok3 || end <= start || len(f[1]) < 2 {
		return mapping{}, false
	}
	return mapping{start: uintptr(start), end: uintptr(end), writable: f[1][1] == 'w', inode: inode}, true
}

// parseUint parses digits in base 10 or 16 (lower case, as /proc writes them).
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
