package main

import (
	"io"
	"runtime/debug"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/koordinator-dev/koordinator/internal/footprint"
	"github.com/koordinator-dev/koordinator/internal/podlocal"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// settler runs once start-up is over (lifecycle.Config.Settled). It gives back what start-up
// alone needed — the heap's free pages, and the executable's pages that client-go's package
// initialisation, the client set-up, TLS and the first list mapped — and then rehearses the next
// reaction, so that the pages it reads are mapped again now, while nothing waits, and not in
// the reaction, where each page fault costs 20-40 µs on a busy VM (docs/performance.md).
//
// The rehearsal runs the reaction's own code on stand-ins that have no effect: the last pod
// state, encoded as a watch event and decoded by client-go's stream watcher and the pod codec,
// then judged; a state file written and read back in memory; its log lines encoded by the same
// encoder into nothing. What it cannot run without an effect — reading from the API server's
// connection, forking the child, writing a file, signalling — still faults in its pages when
// the reaction comes.
type settler struct {
	log            *zap.Logger // koordinator's own: the outcome, at debug
	getenv         func(string) string
	spec           spec.Spec
	command        []string
	started        time.Time
	pod, namespace string // "" without the API

	quiet *zap.Logger // the same encoder and fields as log, writing nowhere: the rehearsal's log lines
}

// settled is lifecycle.Config.Settled: pod is the last state of the pod (nil without one),
// running whether the child runs. The rehearsal is of the next reaction only — the start while
// the child waits, the stop once it runs — since every page it maps stays in the resident set.
func (s *settler) settled(pod *corev1.Pod, running bool) {
	// Encoding the event is no reaction's work: done before the release, its pages go with it.
	var rehearsal *watch.Rehearsal
	if pod != nil {
		var err error
		if rehearsal, err = watch.NewRehearsal(pod); err != nil {
			s.log.Debug("no rehearsal of the next pod event", zap.Error(err))
		}
	}
	var exitedFile []byte // a stop dependency's state file, for the pod-local channel's parsing
	if running && len(s.spec.StopDeps) > 0 {
		exitedFile, _ = podlocal.Marshal(podlocal.State{Container: rehearsalName, Instance: rehearsalName,
			Pid: 1, StartedAt: s.started, Exited: true, ExitedAt: time.Now()})
	}
	// Made here, not at start-up, which needs it not.
	s.quiet = zap.NewNop()
	if q, err := newLogger(s.getenv, io.Discard); err == nil {
		if s.spec.Name != "" {
			q = q.With(zap.String("container", s.spec.Name))
		}
		if s.pod != "" {
			q = q.With(zap.String("pod", s.pod), zap.String("namespace", s.namespace))
		}
		s.quiet = q
	}
	debug.FreeOSMemory()
	n, err := footprint.Release()
	if err != nil {
		s.log.Debug("cannot release start-up memory", zap.Error(err))
		return
	}
	if rehearsal != nil {
		startDeps, stopDeps := s.spec.StartDeps, []string(nil)
		if running {
			startDeps, stopDeps = nil, s.spec.StopDeps
		}
		if err := rehearsal.Run(startDeps, stopDeps); err != nil {
			s.log.Debug("rehearsing the next pod event", zap.Error(err))
		}
		if running {
			s.rehearseStop(exitedFile)
		} else {
			s.rehearseStart()
		}
	}
	s.log.Debug("released start-up memory", zap.Int("unmappedBytes", n))
}

// rehearsalName stands for a container in the rehearsal's state files.
const rehearsalName = "rehearsal"

// rehearseStart encodes the state file the start publishes and the start's log lines.
func (s *settler) rehearseStart() {
	_, _ = podlocal.Marshal(podlocal.State{Container: rehearsalName, Instance: rehearsalName, Pid: 1, StartedAt: s.started})
	s.quiet.Info("dependency ready", zap.String("dependency", rehearsalName), zap.Duration("waited", time.Since(s.started)))
	s.quiet.Info("child started", zap.Int("pid", 1), zap.Strings("command", s.command))
}

// rehearseStop decodes a stop dependency's state file as the pod-local channel reads it (when
// there is one) and encodes the stop's log lines.
func (s *settler) rehearseStop(exitedFile []byte) {
	if exitedFile != nil {
		_, _ = podlocal.Parse(rehearsalName, exitedFile)
	}
	s.quiet.Info("stop dependencies exited", zap.Strings("exited", s.spec.StopDeps), zap.Strings("fromStateFiles", nil))
	s.quiet.Info("stop condition", zap.Stringer("reason", time.Duration(0)), zap.Duration("stopDelay", s.spec.StopDelay))
}
