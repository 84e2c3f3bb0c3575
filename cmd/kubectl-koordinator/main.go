// Command kubectl-koordinator is the kubectl plugin of koordinator (kubectl koordinator ...,
// once it is on PATH):
//
//	inject  wire every pod template of the manifests for koordinator (internal/inject)
//	lint    report what would make a wired pod misbehave (internal/lint)
//
// It is a binary of its own so that nothing of it links into the wrapper, cmd/koordinator.
//
// Exit codes: 0 done; 1 lint found something; 2 bad flags or input (nothing written).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/koordinator-dev/koordinator/internal/inject"
)

// version is set by the Makefile (-X main.version=...).
var version = "dev"

// Exit codes.
const (
	exitOK       = 0
	exitFindings = 1 // lint found mistakes
	exitUsage    = 2 // bad flags, unreadable or invalid input, or nothing could be injected
)

func main() {
	os.Exit(run(os.Args[1:], genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}))
}

// errFindings makes lint exit 1 after printing its findings.
var errFindings = errors.New("findings")

func run(args []string, streams genericiooptions.IOStreams) int {
	root := newRoot(streams)
	root.SetArgs(args)
	err := root.Execute()
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errFindings):
		return exitFindings
	default:
		fmt.Fprintln(streams.ErrOut, "error:", err)
		return exitUsage
	}
}

func newRoot(streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-koordinator",
		Short: "Wire Kubernetes workloads for koordinator and check the wiring",
		Long: `kubectl koordinator wires the containers of a pod template so that koordinator coordinates
them (a sidecar is Ready before the main containers start, and stops once they have exited for
good), and lints wired manifests.`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl koordinator",
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	// The usual kubectl flags (--kubeconfig, --context, -n, ...), for lint --cluster and the
	// pull secrets of inject.
	kube := genericclioptions.NewConfigFlags(true)
	kube.AddFlags(root.PersistentFlags())
	root.AddCommand(newInject(streams, kube), newLint(streams, kube), newVersion(streams.Out))
	return root
}

func newVersion(out io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version and the koordinator image inject uses by default",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(out, "kubectl-koordinator %s\ndefault image %s\n", version, defaultImage())
			return err
		},
	}
}

var releaseTag = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// defaultImage is the release's own image; a build from a commit uses :latest.
func defaultImage() string {
	if releaseTag.MatchString(version) {
		return "ghcr.io/koordinator-dev/koordinator:" + version
	}
	return inject.DefaultImage
}
