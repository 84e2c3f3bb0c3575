package podlocal

import (
	"context"
	"testing"
	"time"
)

// Run with TMPDIR=/dev/shm for a memory-backed emptyDir (medium: Memory), without for a
// disk-backed one (the default).

// BenchmarkPublish is one state-file write (what a wrapper pays twice: started, exited).
func BenchmarkPublish(b *testing.B) {
	p, err := NewPublisher(b.TempDir(), "main")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := p.Started(1, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOwnNameFromMountInfo is the own-name lookup of a wrapper without spec name.
func BenchmarkOwnNameFromMountInfo(b *testing.B) {
	for b.Loop() {
		NameFromMountInfoFile(MountInfoPath, TerminationLogPath)
	}
}

// BenchmarkReaction is what the channel adds to a stop: a wrapper publishes its exit, and the
// watcher of another wrapper delivers the parsed state (write, inotify, read, parse, hand-over).
func BenchmarkReaction(b *testing.B) {
	folder := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := Watch(ctx, folder, []string{"main"}, Options{PollInterval: time.Hour})
	if !w.Inotify() {
		b.Skip("no inotify")
	}
	<-w.Updates()
	p, _ := NewPublisher(folder, "main")
	code := 0
	for b.Loop() {
		code = (code + 1) % 256
		if err := p.Exited(code, time.Now(), false); err != nil {
			b.Fatal(err)
		}
		for m := range w.Updates() {
			if m["main"].ExitCode == code {
				break
			}
		}
	}
}
