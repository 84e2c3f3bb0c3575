package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCheckBinary: the test binary itself is an ELF for this machine; it is refused for the
// other architecture, and a non-ELF file is refused outright.
func TestCheckBinary(t *testing.T) {
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	if other == "" {
		t.Skipf("GOARCH %s is neither amd64 nor arm64", runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkBinary(self, other); err == nil || !strings.Contains(err.Error(), "built for") {
		t.Errorf("%s as %s: %v, want refused as another architecture", self, other, err)
	}
	notELF := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkBinary(notELF, "amd64"); err == nil {
		t.Error("non-ELF file accepted")
	}
}
