// Package benchdoc is what the benchmarks share to keep docs/performance.md up to date: the
// machine a run was measured on, and rewriting one "## " section of a markdown file.
package benchdoc

import (
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine is what a figure was measured on, as the doc states it above each table.
type Machine struct {
	Date      string // YYYY-MM-DD
	Cores     int
	CPU       string // model name
	Kernel    string // release
	GoVersion string // of the binary measured
	Load      string // load average at the start
}

// ThisMachine describes this machine now; goVersion is the measured binary's Go version.
func ThisMachine(goVersion string) Machine {
	load := strings.Fields(readLine("/proc/loadavg"))
	return Machine{
		Date:      time.Now().Format("2006-01-02"),
		Cores:     runtime.NumCPU(),
		CPU:       cpuModel(),
		Kernel:    readLine("/proc/sys/kernel/osrelease"),
		GoVersion: goVersion,
		Load:      strings.Join(load[:min(3, len(load))], " "),
	}
}

func readLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// Replace replaces the section that starts with a line beginning with heading (up to the
// next "## " heading) with text. When there is none, text goes right after the section headed
// after (when given and present), else at the end.
func Replace(path, heading, after, text string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(b), "\n")
	find := func(heading string) (start, end int) {
		start, end = -1, len(lines)
		for i, l := range lines {
			if start < 0 {
				if strings.HasPrefix(l, heading) {
					start = i
				}
				continue
			}
			if strings.HasPrefix(l, "## ") {
				end = i
				break
			}
		}
		return start, end
	}
	start, end := find(heading)
	if start < 0 && after != "" {
		if s, e := find(after); s >= 0 && e < len(lines) {
			start, end = e, e // insert before the section that follows after's
			text += "\n"
		}
	}
	var out string
	switch {
	case start == end:
		out = strings.Join(lines[:start], "") + text + strings.Join(lines[end:], "")
	case start < 0:
		out = strings.TrimRight(string(b), "\n") + "\n\n" + text
	case end == len(lines):
		out = strings.Join(lines[:start], "") + text
	default:
		out = strings.Join(lines[:start], "") + text + "\n" + strings.Join(lines[end:], "")
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
