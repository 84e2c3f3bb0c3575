package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/koordinator-dev/koordinator/internal/lifecycle"
	"github.com/koordinator-dev/koordinator/internal/spec"
	"github.com/koordinator-dev/koordinator/internal/supervise"
	"github.com/koordinator-dev/koordinator/internal/watch"
)

// version is stamped by the Makefile (-X main.version=...).
var version = "dev"

const usage = `Usage:
  koordinator [FLAGS] [--] COMMAND [ARG...]   run COMMAND under coordination
  koordinator                                 with a stopAction in the spec: a stopper (no child)
  koordinator --install DIR                   copy this executable to DIR/koordinator
  koordinator --check                         validate KOORDINATOR_SPEC, print the effective spec
  koordinator --version | --help

Arguments before COMMAND that start with "-" are koordinator's own; "--" ends them.
The spec is read from KOORDINATOR_SPEC (JSON); see the README for its fields.
`

// run is koordinator's whole life; it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	started := time.Now()

	fs := flag.NewFlagSet("koordinator", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	install := fs.String("install", "", "copy this executable to `DIR`/koordinator")
	check := fs.Bool("check", false, "validate KOORDINATOR_SPEC and print the effective spec")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "koordinator: %v (see koordinator --help)\n", err)
		return lifecycle.ExitConfig
	}
	command := fs.Args()

	switch {
	case *showVersion:
		fmt.Fprintln(stdout, "koordinator", version)
		return 0
	case *install != "":
		if err := installTo(*install); err != nil {
			fmt.Fprintf(stderr, "koordinator: %v\n", err)
			return lifecycle.ExitConfig
		}
		fmt.Fprintf(stdout, "installed %s\n", filepath.Join(*install, "koordinator"))
		return 0
	case *check:
		return checkSpec(getenv, stdout, stderr)
	case len(command) == 0 && !hasStopAction(getenv):
		fmt.Fprint(stderr, "koordinator: no command to run\n\n"+usage)
		return lifecycle.ExitConfig
	}

	// Register before anything slow, so a SIGTERM during start-up is ours to handle.
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, supervise.CaughtSignals()...)

	log, err := newLogger(getenv, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "koordinator: %v\n", err)
		return lifecycle.ExitConfig
	}
	defer func() { _ = log.Sync() }()

	sp, raw, err := spec.FromEnv(lookupFrom(getenv))
	if err != nil {
		return fail(log, stderr, err.Error())
	}
	if sp.Name != "" {
		log = log.With(zap.String("container", sp.Name))
	}
	if len(command) == 0 {
		if err := sp.CheckStopper(); err != nil {
			return fail(log, stderr, err.Error())
		}
	}

	localDir, err := podLocalDir(getenv, log)
	if err != nil {
		return fail(log, stderr, err.Error())
	}

	cfg := lifecycle.Config{
		Spec:        sp,
		RawSpec:     raw,
		Command:     command,
		SelfArgv:    args,
		Signals:     signals,
		Started:     started,
		PodLocalDir: localDir,
	}
	if sp.NeedsAPI() {
		id, err := resolvePod(getenv, os.ReadFile)
		if err != nil {
			return fail(log, stderr, err.Error())
		}
		log = log.With(zap.String("pod", id.Name), zap.String("namespace", id.Namespace))
		klog.SetLogger(zapr.NewLogger(log.Named("client-go")))
		cfg.Namespace, cfg.PodName = id.Namespace, id.Name
		cfg.Connect = func() (cache.ListerWatcher, error) {
			rc, err := restConfig(getenv)
			if err != nil {
				return nil, err
			}
			return watch.NewListWatch(rc, id.Namespace, id.Name)
		}
	}
	cfg.Log = log
	s := &settler{log: log, getenv: getenv, spec: sp, command: command, started: started, pod: cfg.PodName, namespace: cfg.Namespace}
	cfg.Settled = s.settled
	return lifecycle.Run(context.Background(), cfg)
}

// fail reports a configuration error as one line and returns 125. With logging off the line
// still goes out: an unexplained 125 helps nobody.
func fail(log *zap.Logger, stderr io.Writer, msg string) int {
	if log.Core().Enabled(zapcore.ErrorLevel) {
		log.Error(msg, zap.Int("code", lifecycle.ExitConfig))
	} else {
		fmt.Fprintf(stderr, "koordinator: %s\n", msg)
	}
	return lifecycle.ExitConfig
}

func checkSpec(getenv func(string) string, stdout, stderr io.Writer) int {
	sp, _, err := spec.FromEnv(lookupFrom(getenv))
	if err != nil {
		fmt.Fprintf(stderr, "koordinator: %v\n", err)
		return lifecycle.ExitConfig
	}
	out, err := sp.MarshalJSON()
	if err != nil {
		fmt.Fprintf(stderr, "koordinator: %v\n", err)
		return lifecycle.ExitConfig
	}
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}

// hasStopAction reports whether KOORDINATOR_SPEC mentions a stopAction: then koordinator without
// a command is a stopper, and the spec's own errors say what is wrong with it.
func hasStopAction(getenv func(string) string) bool {
	return strings.Contains(getenv(spec.EnvVar), `"stopAction"`)
}

// lookupFrom adapts getenv to a lookup; an empty variable counts as unset, as for the spec.
func lookupFrom(getenv func(string) string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v := getenv(k)
		return v, v != ""
	}
}

// podLocalDir is where the pod-local channel lives: KOORDINATOR_STATE_DIR when set (a writable
// folder every coordinated container mounts, for a binary mounted read-only from an image
// volume), else the folder holding this binary (the shared emptyDir it was installed into), or
// "" when KOORDINATOR_LOCAL_STATE=off.
func podLocalDir(getenv func(string) string, log *zap.Logger) (string, error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv("KOORDINATOR_LOCAL_STATE"))); v {
	case "off":
		return "", nil
	case "", "on":
	default:
		return "", fmt.Errorf("KOORDINATOR_LOCAL_STATE=%q: use on (the default) or off", v)
	}
	if dir := getenv("KOORDINATOR_STATE_DIR"); dir != "" {
		if !filepath.IsAbs(dir) {
			return "", fmt.Errorf("KOORDINATOR_STATE_DIR=%q: use an absolute path, the mountPath of a writable volume (an emptyDir) every coordinated container mounts", dir)
		}
		return filepath.Clean(dir), nil
	}
	exe, err := os.Executable()
	if err != nil {
		log.Debug("pod-local channel off: cannot tell where this binary is", zap.Error(err))
		return "", nil
	}
	return filepath.Dir(exe), nil
}

// restConfig is the in-cluster configuration, or the kubeconfig named by KUBECONFIG.
func restConfig(getenv func(string) string) (*rest.Config, error) {
	if getenv("KUBECONFIG") == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster configuration: %w (outside a pod, set KUBECONFIG)", err)
		}
		return c, nil
	}
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig from KUBECONFIG: %w", err)
	}
	return c, nil
}

// newLogger builds the zap logger from KOORDINATOR_LOG_FORMAT and KOORDINATOR_LOG_LEVEL.
func newLogger(getenv func(string) string, stderr io.Writer) (*zap.Logger, error) {
	level := zapcore.InfoLevel
	switch v := strings.ToLower(getenv("KOORDINATOR_LOG_LEVEL")); v {
	case "", "info":
	case "off":
		return zap.NewNop(), nil
	default:
		if err := level.Set(v); err != nil || level > zapcore.ErrorLevel {
			return nil, fmt.Errorf("KOORDINATOR_LOG_LEVEL=%q: use debug, info, warn, error or off", v)
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "time"
	ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	switch v := strings.ToLower(getenv("KOORDINATOR_LOG_FORMAT")); v {
	case "", "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("KOORDINATOR_LOG_FORMAT=%q: use json or console", v)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(stderr)), level)
	return zap.New(core).Named("koordinator"), nil
}
