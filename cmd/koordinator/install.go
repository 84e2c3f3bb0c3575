package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// installTo copies this executable to dir/koordinator for an init container: a temporary file in
// dir, fsync, mode 0755, then rename, so a container never sees a half-written binary and running
// it twice is harmless.
//
// It never writes through a symlink: every component of dir as the user named it (cleaned, so
// a trailing slash cannot make the last one resolve) is opened with O_NOFOLLOW, one at a time
// from the one before, and the file is created, renamed and checked relative to that open
// folder, so nothing can be swapped in between the check and the write.
func installTo(dir string) error {
	dir = filepath.Clean(dir)
	dirfd, err := openDirNoFollow(dir)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer unix.Close(dirfd)

	const name = "koordinator"
	var st unix.Stat_t
	switch err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return fmt.Errorf("install: %s: %w", filepath.Join(dir, name), err)
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("install: %s is a symlink; refusing to write through it", filepath.Join(dir, name))
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

	tmpName, tmp, err := createTemp(dirfd, dir)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = unix.Unlinkat(dirfd, tmpName, 0)
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
	// rename(2) replaces a name, never what it points to: a symlink put there since the check
	// above would be replaced, not written through.
	if err := unix.Renameat(dirfd, tmpName, dirfd, name); err != nil {
		return fmt.Errorf("install: renaming into %s: %w", filepath.Join(dir, name), err)
	}
	done = true
	_ = unix.Fsync(dirfd) // make the rename durable
	return nil
}

// openDirNoFollow opens the folder path (already cleaned) one component at a time, refusing a
// component that is a symlink or not a folder. It returns the folder's descriptor.
func openDirNoFollow(path string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	start, rest, at := ".", path, ""
	if filepath.IsAbs(path) {
		start, rest, at = "/", strings.TrimPrefix(path, "/"), "/"
	}
	fd, err := unix.Open(start, flags, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: start, Err: err}
	}
	for _, c := range strings.Split(rest, "/") {
		if c == "" || c == "." {
			continue
		}
		at += c
		next, err := unix.Openat(fd, c, flags, 0)
		var st unix.Stat_t
		// With O_DIRECTORY a symlink fails as ENOTDIR (or ELOOP): look at the name itself.
		isLink := err != nil && unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
		unix.Close(fd)
		switch {
		case isLink:
			return -1, fmt.Errorf("%s is a symlink; refusing to write through it (name the folder it points to)", at)
		case errors.Is(err, unix.ENOTDIR):
			return -1, fmt.Errorf("%s is not a directory", at)
		case err != nil:
			return -1, &os.PathError{Op: "open", Path: at, Err: err}
		}
		fd = next
		at += "/"
	}
	return fd, nil
}

// createTemp creates a new, uniquely named file in the open folder dirfd (named dir in
// errors), never following a symlink.
func createTemp(dirfd int, dir string) (string, *os.File, error) {
	for range 100 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := ".koordinator-install-" + hex.EncodeToString(b[:])
		fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return "", nil, &os.PathError{Op: "create", Path: filepath.Join(dir, name), Err: err}
		}
		return name, os.NewFile(uintptr(fd), filepath.Join(dir, name)), nil
	}
	return "", nil, fmt.Errorf("cannot create a temporary file in %s", dir)
}
