package footprint

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseMapping(t *testing.T) {
	for _, tc := range []struct {
		line string
		want mapping
		ok   bool
	}{
		{"00400000-00b17000 r-xp 00000000 fe:00 9986057    /bin/koordinator", mapping{0x400000, 0xb17000, false, 9986057}, true},
		{"0121f000-01290000 rw-p 00e1f000 fe:00 9986057    /bin/koordinator", mapping{0x121f000, 0x1290000, true, 9986057}, true},
		{"7ffe86b86000-7ffe86ba7000 rw-p 00000000 00:00 0   [stack]", mapping{0x7ffe86b86000, 0x7ffe86ba7000, true, 0}, true},
		{"01292000-032d8000 rw-p 00000000 00:00 0", mapping{0x1292000, 0x32d8000, true, 0}, true},
		{"", mapping{}, false},
		{"00400000 r-xp 00000000 fe:00 1 /x", mapping{}, false},
		{"00b17000-00400000 r-xp 00000000 fe:00 1 /x", mapping{}, false},
		{"zz-00b17000 r-xp 00000000 fe:00 1 /x", mapping{}, false},
		{"00400000-00b17000 r-xp 00000000 fe:00 x /x", mapping{}, false},
	} {
		got, ok := parseMapping([]byte(tc.line))
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseMapping(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReleasable(t *testing.T) {
	const exe = 9986057
	for _, tc := range []struct {
		name string
		m    mapping
		want bool
	}{
		{"text", mapping{0x400000, 0xb17000, false, exe}, true},
		{"read-only data", mapping{0xb17000, 0x121f000, false, exe}, true},
		{"data: writable, would lose writes", mapping{0x121f000, 0x1290000, true, exe}, false},
		{"another file", mapping{0x7f0000000000, 0x7f0000100000, false, 42}, false},
		{"anonymous", mapping{0x1292000, 0x32d8000, true, 0}, false},
		{"anonymous read-only", mapping{0x1292000, 0x32d8000, false, 0}, false},
	} {
		if got := releasable(tc.m, exe); got != tc.want {
			t.Errorf("%s: releasable(%+v) = %v, want %v", tc.name, tc.m, got, tc.want)
		}
	}
}

// Release takes the executable's read-only pages out of the resident set (the test goes on
// running: its code faults back in).
func TestReleaseShrinksFileBackedRSS(t *testing.T) {
	before := rssFileKB(t)
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFileKB(t)
	if n <= 0 {
		t.Fatalf("Release unmapped %d bytes", n)
	}
	if after >= before {
		t.Errorf("RssFile %d kB before Release, %d kB after: want less", before, after)
	}
	t.Logf("unmapped %d bytes; RssFile %d kB → %d kB", n, before, after)
}

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
