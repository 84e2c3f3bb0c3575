package main

import (
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
	log     *zap.Logger // koordinator's own: the outcome, at debug
	quiet   *zap.Logger // the same encoder and fields, writing nowhere: the rehearsal's log lines
	spec    spec.Spec
	command []string
	started time.Time
}

// settled is lifecycle.Config.Settled; pod is the last state of the pod (nil without one).
func (s *settler) settled(pod *corev1.Pod) {
	// Encoding the event is no reaction's work: done before the release, its pages go with it.
	var rehearsal *watch.Rehearsal
	if pod != nil {
		var err error
		if rehearsal, err = watch.NewRehearsal(pod); err != nil {
			s.log.Debug("no rehearsal of the next pod event", zap.Error(err))
		}
	}
	debug.FreeOSMemory()
	n, err := footprint.Release()
	if err != nil {
		s.log.Debug("cannot release start-up memory", zap.Error(err))
		return
	}
	if rehearsal != nil {
		if err := rehearsal.Run(s.spec.StartDeps, s.spec.StopDeps); err != nil {
			s.log.Debug("rehearsing the next pod event", zap.Error(err))
		}
	}
	s.rehearseStateFile()
	s.rehearseLog()
	s.log.Debug("released start-up memory", zap.Int("unmappedBytes", n))
}

// rehearseStateFile encodes this container's state file as the start publishes it and decodes
// a stop dependency's as the pod-local channel reads it.
func (s *settler) rehearseStateFile() {
	const name = "rehearsal"
	for _, st := range []podlocal.State{
		{Container: name, Instance: name, Pid: 1, StartedAt: s.started},
		{Container: name, Instance: name, Pid: 1, StartedAt: s.started, Exited: true, ExitedAt: time.Now()},
	} {
		if b, err := podlocal.Marshal(st); err == nil {
			_, _ = podlocal.Parse(name, b)
		}
	}
}

// rehearseLog encodes the reactions' log lines, with the same field types.
func (s *settler) rehearseLog() {
	s.quiet.Info("dependency ready", zap.String("dependency", "rehearsal"), zap.Duration("waited", time.Since(s.started)))
	s.quiet.Info("child started", zap.Int("pid", 1), zap.Strings("command", s.command))
	s.quiet.Info("stop dependencies exited", zap.Strings("exited", s.spec.StopDeps), zap.Strings("fromStateFiles", nil))
	s.quiet.Info("stop condition", zap.Stringer("reason", time.Duration(0)), zap.Duration("stopDelay", s.spec.StopDelay))
}
