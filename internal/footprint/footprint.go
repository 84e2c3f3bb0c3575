// Package footprint gives back the memory koordinator's own executable holds only because of
// start-up. Package initialisation of client-go and its dependencies, client set-up, TLS and
// the first list touch most of the binary, and those pages would stay in the resident set
// although a waiting wrapper runs a small part of it. Once the wrapper has settled into
// watching, Release unmaps them: they stay in the page cache, shared by every wrapper running
// the same file, and fault back in when the code runs again (20-40 µs a fault on the
// benchmark's VM, which is why the caller then rehearses the next reaction).
//
// What the release changes is the process's resident set (VmRSS), not the container's working
// set: the binary's page cache is charged to whoever read it first — the init container that
// copied it, so the pod — and not to the wrapper's container (docs/performance.md).
//
// Only read-only mappings of the executable are touched: dropping a writable one would lose
// data.
package footprint

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// Release unmaps the executable's read-only pages from this process (they stay cached and
// fault back in when used) and returns how many bytes of mappings that covered. Call it once
// start-up is over; pair it with debug.FreeOSMemory for the heap.
func Release() (int, error) {
	var exe syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &exe); err != nil {
		return 0, fmt.Errorf("find own executable: %w", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("read own mappings: %w", err)
	}
	var total int
	for line := range bytes.Lines(maps) {
		m, ok := parseMapping(bytes.TrimRight(line, "\n"))
		if !ok || !releasable(m, exe.Ino) {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		total += int(m.end - m.start)
	}
	return total, nil
}

// releasable reports whether m is one of the executable's (inode exe) read-only mappings.
func releasable(m mapping, exe uint64) bool { return !m.writable && m.inode == exe }

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end uintptr
	writable   bool
	inode      uint64
}

// parseMapping reads "start-end perms offset dev inode [path]"; ok is false for a line without
// that shape.
func parseMapping(line []byte) (mapping, bool) {
	f := bytes.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	lo, hi, ok := bytes.Cut(f[0], []byte("-"))
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(string(lo), 16, 64)
	end, err2 := strconv.ParseUint(string(hi), 16, 64)
	inode, err3 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end <= start || len(f[1]) < 2 {
		return mapping{}, false
	}
	return mapping{start: uintptr(start), end: uintptr(end), writable: f[1][1] == 'w', inode: inode}, true
}
