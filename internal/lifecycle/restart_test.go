package lifecycle

import (
	"testing"
	"time"
)

func TestRestartDelay(t *testing.T) {
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := restartDelay(n); got != w {
			t.Errorf("restartDelay(%d) = %v, want %v", n, got, w)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		policy   string
		code     int
		stopping bool
		want     bool
	}{
		{"", 1, false, false},
		{"OnFailure", 1, false, true},
		{"OnFailure", 0, false, false},
		{"OnFailure", 137, false, true},
		{"Always", 0, false, true},
		{"Always", 1, true, false},
		{"OnFailure", 1, true, false},
	}
	for _, tt := range tests {
		if got := shouldRestart(tt.policy, tt.code, tt.stopping); got != tt.want {
			t.Errorf("shouldRestart(%q, %d, stopping %v) = %v, want %v", tt.policy, tt.code, tt.stopping, got, tt.want)
		}
	}
}
