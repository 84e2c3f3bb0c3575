package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// installTo copies this executable to dir/koordinator for an init container: a temporary file in
// dir, fsync, mode 0755, then rename, so a container never sees a half-written binary and running
// it twice is harmless. It refuses to write through a symlink.
func installTo(dir string) error {
	target := filepath.Join(dir, "koordinator")
	for _, p := range []string{dir, target} {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && p == target:
		case err != nil:
			return fmt.Errorf("install: %w", err)
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("install: %s is a symlink; refusing to write through it", p)
		case p == dir && !fi.IsDir():
			return fmt.Errorf("install: %s is not a directory", p)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: finding this executable: %w", err)
	}
	src, err := os.Open(self)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer src.Close()

	tmp, err := os.CreateTemp(dir, ".koordinator-install-*")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return fmt.Errorf("install: copying to %s: %w", dir, err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil { // make the rename durable
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
