package spec

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is a configuration error: one line saying what is wrong and how to fix it.
type Error struct {
	Field string // the key as the user wrote it; "" when the error is about the spec as a whole
	Msg   string // the sentence after the "KOORDINATOR_SPEC: " prefix
}

func (e *Error) Error() string {
	return EnvVar + ": " + e.Msg
}

// errorf builds an *Error. Every value the user wrote goes through %q or quote, so the
// message stays on one line whatever the input holds.
func errorf(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// quote renders user text for a message: Go-quoted, and cut short when long.
func quote(s string) string {
	return strconv.Quote(truncate(s))
}

func truncate(s string) string {
	const max = 64
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// suggest returns the candidate the user most likely meant by got, or "". It tries, in order:
// the same word in another case ("startdeps"), the same word with other separators
// ("stop_deps"), then a slip of one or two letters ("stopDep", "startDeps ").
func suggest(got string, candidates []string) string {
	for _, c := range candidates {
		if strings.EqualFold(got, c) {
			return c
		}
	}
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	}
	g := norm(got)
	for _, c := range candidates {
		if norm(c) == g {
			return c
		}
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		n := norm(c)
		// Short words need a closer match, or "stop" would suggest everything.
		if d := editDistance(g, n, bestDist); d < bestDist && d*3 <= len(n) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the number of single-letter insertions, deletions, substitutions and swaps of
// neighbours that turn a into b ("TREM" is one swap from "TERM"), or limit when it is at least limit.
func editDistance(a, b string, limit int) int {
	if len(a)-len(b) >= limit || len(b)-len(a) >= limit {
		return limit
	}
	// Three rows of the usual dynamic-programming table: i-2, i-1 and i.
	before, prev, cur := make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], before[j-2]+1)
			}
		}
		before, prev, cur = prev, cur, before
	}
	return min(prev[len(b)], limit)
}
