package lifecycle

import (
	"errors"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/koordinator-dev/koordinator/internal/podlocal"
)

// The loop's side of the pod-local channel: publishing this container's state, taking in the
// stop dependencies' states. Every write and read is on the loop's goroutine or the watcher's;
// nothing here decides anything but what to log.

// publisher returns the publisher of this container's state file, looking for the own name
// once: the spec's name, else the pod's (watch.FindSelf, once the pod has been seen), else the
// termination-log mount in mountinfo. nil when the channel is off or no name is found: then the
// containers that depend on this one rely on the API.
func (l *loop) publisher() *podlocal.Publisher {
	if l.pubResolved {
		return l.pub
	}
	l.pubResolved = true
	if l.cfg.PodLocalDir == "" {
		return nil
	}
	name, from := l.self, "pod"
	if name != "" && name == l.cfg.Spec.Name {
		from = "spec"
	}
	if name == "" {
		path := l.cfg.MountInfo
		if path == "" {
			path = podlocal.MountInfoPath
		}
		// Reading mountinfo costs the kernel 60-90 µs; where the termination-log file is absent
		// (outside Kubernetes, or a custom terminationMessagePath) it cannot name us anyway.
		if _, err := os.Lstat(podlocal.TerminationLogPath); err == nil || l.cfg.MountInfo != "" {
			name, _ = podlocal.NameFromMountInfoFile(path, podlocal.TerminationLogPath)
			from = "termination-log mount"
		}
	}
	if name == "" {
		l.log.Debug("not publishing on the pod-local channel: this container's name is unknown (set \"name\" in the spec)")
		return nil
	}
	pub, err := podlocal.NewPublisher(l.cfg.PodLocalDir, name)
	if err != nil {
		l.log.Debug("not publishing on the pod-local channel", zap.Error(err))
		return nil
	}
	l.pub = pub
	l.log.Debug("publishing on the pod-local channel", zap.String("file", pub.Path()), zap.String("nameFrom", from))
	return pub
}

func (l *loop) publishStarted() {
	if p := l.publisher(); p != nil && l.child != nil {
		l.publishFailed(p.Started(l.child.Pid(), time.Now()))
	}
}

// publishExited publishes that this container exits with code (once). terminating says a
// termination signal came first: the kubelet is stopping this container.
func (l *loop) publishExited(code int) {
	if l.exitPublished {
		return
	}
	l.exitPublished = true
	if p := l.publisher(); p != nil {
		l.publishFailed(p.Exited(code, time.Now(), l.terms > 0))
	}
}

// publishFailed logs a failed write, once. A read-only folder is expected where the binary is
// run straight from an image rather than from the shared emptyDir, so that is debug only.
func (l *loop) publishFailed(err error) {
	if err == nil || l.pubFailed {
		return
	}
	l.pubFailed = true
	if l.cfg.Spec.NoAPI {
		// Without the API the channel is all the containers that depend on this one have.
		l.log.Warn("cannot publish on the pod-local channel, and without the API (\"api\": false) containers that depend on this one never learn of its exit: set KOORDINATOR_STATE_DIR to a writable emptyDir every coordinated container mounts", zap.Error(err))
		return
	}
	msg := "cannot publish on the pod-local channel; containers that depend on this one rely on the API"
	if errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		l.log.Debug(msg, zap.Error(err))
		return
	}
	l.log.Warn(msg, zap.Error(err))
}

// localChannels are the state-file watcher's channels; nil (never ready) when there is none.
func (l *loop) localChannels() (<-chan map[string]podlocal.State, <-chan podlocal.Warning) {
	if l.local == nil {
		return nil, nil
	}
	return l.local.Updates(), l.local.Warnings()
}

// seeFiles takes the stop dependencies' latest state files.
func (l *loop) seeFiles(files map[string]podlocal.State) {
	for _, d := range l.stopDeps {
		s, ok := files[d]
		if old, had := l.files[d]; ok == had && s == old {
			continue
		}
		switch {
		case !ok:
			l.log.Debug("state file", zap.String("dependency", d), zap.String("state", "none"))
		case s.Restarting:
			l.log.Debug("state file", zap.String("dependency", d), zap.String("state", "restarting"), zap.Int("code", s.ExitCode),
				zap.Int("restarts", s.Restarts), zap.String("instance", s.Instance))
		case s.Exited:
			l.log.Debug("state file", zap.String("dependency", d), zap.String("state", "exited"), zap.Int("code", s.ExitCode),
				zap.Bool("terminating", s.Terminating), zap.Time("exitedAt", s.ExitedAt), zap.String("instance", s.Instance))
		default:
			l.log.Debug("state file", zap.String("dependency", d), zap.String("state", "running"), zap.Int("pid", s.Pid),
				zap.String("instance", s.Instance))
		}
	}
	l.files = files
}

// fileWarnEvery bounds how often problems with one state file are logged.
const fileWarnEvery = 30 * time.Second

// localWarning logs an ignored state file (or folder), at most every fileWarnEvery per file.
func (l *loop) localWarning(w podlocal.Warning) {
	if last, ok := l.fileWarned[w.Name]; ok && time.Since(last) < fileWarnEvery {
		return
	}
	l.fileWarned[w.Name] = time.Now()
	l.log.Warn("ignoring a pod-local state file", zap.Error(w))
}
