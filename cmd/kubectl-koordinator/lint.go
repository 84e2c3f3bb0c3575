package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/koordinator-dev/koordinator/internal/lint"
)

const lintExample = `  # Check the manifests of a directory before applying them:
  kubectl koordinator lint -f k8s/

  # In CI, as JSON (exit status 1 when anything is found):
  kubectl koordinator lint -f k8s/ -o json

  # And whether the pods' ServiceAccounts may watch their pods in namespace batch:
  kubectl koordinator lint -f k8s/ --cluster -n batch`

// finding is one line of lint's output, with where it was found.
type finding struct {
	File     string `json:"file"`
	Document int    `json:"document"` // 1-based, in the file
	Object   string `json:"object"`   // "Job/name", "List item 2: Deployment/name"
	lint.Finding
}

func newLint(streams genericiooptions.IOStreams, kube *genericclioptions.ConfigFlags) *cobra.Command {
	var files fileFlags
	var output string
	var cluster bool
	cmd := &cobra.Command{
		Use:   "lint -f FILE|DIR|- [flags]",
		Short: "Report what would make a koordinator-wired pod misbehave",
		Long: `Check every pod template of the manifests for the mistakes that would make a wired pod
misbehave: KOORDINATOR_SPEC errors (in the wrapper's own words), dependencies that name no
container or this container, start cycles, a stop dependency on a native sidecar, a spec not run
behind koordinator, a container that does not mount the binary's volume, no init container
installing the binary, the KOOORDINATOR_SPEC typo, a stopDelay longer than
terminationGracePeriodSeconds, stop dependencies under restartPolicy Always, an init container
waiting for a container started after it, and no ServiceAccount while the spec needs the API. With --cluster, also whether the pod's
ServiceAccount may list and watch pods in its namespace (the manifest's, else -n or the
context's), asked with SubjectAccessReviews. One line each: file, object, container, problem,
fix. Exit status 1 when anything is found, 2 when the input cannot be read or the cluster asked.`,
		Example: lintExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: write -o text or -o json", output)
			}
			ins, err := files.read(streams.In)
			if err != nil {
				return err
			}
			var rbac *rbacCheck
			namespace := ""
			if cluster {
				cfg, err := kube.ToRESTConfig()
				if err != nil {
					return fmt.Errorf("--cluster: %w", err)
				}
				if namespace, _, err = kube.ToRawKubeConfigLoader().Namespace(); err != nil {
					return fmt.Errorf("--cluster: %w", err)
				}
				check, err := newAccessChecker(cfg)
				if err != nil {
					return fmt.Errorf("--cluster: %w", err)
				}
				rbac = &rbacCheck{check: check, answers: map[string]string{}}
			}
			found := []finding{}
			for _, in := range ins {
				for _, d := range in.docs {
					ts, err := d.Templates()
					if err != nil {
						return fmt.Errorf("%s: document %d: %w", in.name, d.Index, err)
					}
					for _, t := range ts {
						for _, f := range lint.Template(t.Value) {
							found = append(found, finding{File: in.name, Document: d.Index, Object: t.Where, Finding: f})
						}
						if sa, needsAPI := lint.ServiceAccount(t.Value.Spec); rbac != nil && needsAPI {
							ns := t.Namespace
							if ns == "" {
								ns = namespace
							}
							f, err := rbac.finding(cmd.Context(), ns, sa)
							if err != nil {
								return err
							}
							if f != nil {
								found = append(found, finding{File: in.name, Document: d.Index, Object: t.Where, Finding: *f})
							}
						}
					}
				}
			}
			if output == "json" {
				enc := json.NewEncoder(streams.Out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(found); err != nil {
					return err
				}
			} else {
				for _, f := range found {
					container := ""
					if f.Container != "" {
						container = "container " + f.Container + ": "
					}
					fmt.Fprintf(streams.Out, "%s: %s: %s%s; fix: %s [%s]\n", f.File, f.Object, container, f.Message, f.Fix, f.Rule)
				}
			}
			if len(found) > 0 {
				return errFindings
			}
			return nil
		},
	}
	files.add(cmd, "the manifests to check")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (one line per finding) or json")
	cmd.Flags().BoolVar(&cluster, "cluster", false, "also ask the cluster whether each pod's ServiceAccount may list and watch pods (SubjectAccessReview)")
	return cmd
}
