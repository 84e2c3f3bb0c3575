package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	coreclient "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/koordinator-dev/koordinator/internal/imageconfig"
	"github.com/koordinator-dev/koordinator/internal/inject"
	"github.com/koordinator-dev/koordinator/internal/lint"
	"github.com/koordinator-dev/koordinator/internal/manifest"
)

const injectExample = `  # A Job whose "cloud-sql-proxy" container must be Ready before the others start, and must
  # stop once they have exited for good:
  kubectl koordinator inject -f job.yaml --sidecar cloud-sql-proxy | kubectl apply -f -

  # The same choice kept in the manifest: annotate the pod template
  #   metadata: {annotations: {koordinator.dev/sidecars: cloud-sql-proxy}}
  # and wire every file of a directory in place:
  kubectl koordinator inject -f k8s/ --in-place

  # A container without "command" runs its image's ENTRYPOINT, read from its registry; or say it:
  kubectl koordinator inject -f job.yaml --sidecar proxy \
      --entrypoint proxy='["/cloud-sql-proxy"]' --entrypoint main=/app/migrate --cmd main=`

type injectOptions struct {
	files                   fileFlags
	sidecars, mains         []string
	stopDelay, startTimeout string
	image                   string
	entrypoints, cmds       []string
	offline, inPlace, rbac  bool
	platform                string
	pullSecrets             []string
	cluster                 bool
	kube                    *genericclioptions.ConfigFlags
	registry                imageconfig.Registry
}

func newInject(streams genericiooptions.IOStreams, kube *genericclioptions.ConfigFlags) *cobra.Command {
	o := &injectOptions{kube: kube}
	cmd := &cobra.Command{
		Use:   "inject -f FILE|DIR|- [flags]",
		Short: "Wire every pod template of the manifests for koordinator",
		Long: `Wire every pod template (Pod, Job, CronJob, Deployment, StatefulSet, DaemonSet, ReplicaSet,
ReplicationController, PodTemplate, and those in Lists) for koordinator: the init container that
installs the binary, its emptyDir, the downward-API podinfo volume, the mounts, a KOORDINATOR_SPEC
per coordinated container, and each coordinated container's command run behind
/koordinator/koordinator. Everything else is left as it was, comments and field order included;
a file with nothing to change is written back byte for byte.

What to coordinate comes from the pod template's annotations, else from the flags:
  koordinator.dev/sidecars: "a,b"      sidecars; every other regular container is a main
  koordinator.dev/mains: "m"           mains; every other regular container is a sidecar
  koordinator.dev/stop-delay: "1s"     the sidecars' stopDelay
  koordinator.dev/start-timeout: "5m"  the mains' startTimeout
  spec.koordinator.dev/NAME: '{...}'   container NAME's full KOORDINATOR_SPEC, as written
  koordinator.dev/inject: "false"      leave this template alone
Mains wait until every sidecar is Ready; sidecars are stopped once every main has exited for
good. A native sidecar (an init container with restartPolicy: Always) is a start dependency
only; in a pod whose restartPolicy is Always sidecars get no stop dependencies.

A container without command runs its image's ENTRYPOINT and CMD: inject reads them from the
registry with the docker config's credentials (--offline: never), or takes --entrypoint/--cmd.

Injecting an injected or hand-wired manifest changes nothing. On any error nothing is written.`,
		Example: injectExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), streams)
		},
	}
	o.files.add(cmd, "the manifests to wire")
	f := cmd.Flags()
	f.StringArrayVar(&o.sidecars, "sidecar", nil, "a sidecar container (repeatable); every other regular container is a main")
	f.StringArrayVar(&o.mains, "main", nil, "a main container (repeatable); every other regular container is a sidecar")
	f.StringVar(&o.stopDelay, "stop-delay", "", `the sidecars' stopDelay, like "1s"`)
	f.StringVar(&o.startTimeout, "start-timeout", "", `the mains' startTimeout, like "5m"`)
	f.StringVar(&o.image, "image", defaultImage(), "the koordinator image of the init container")
	f.StringArrayVar(&o.entrypoints, "entrypoint", nil, `NAME=WORDS: the ENTRYPOINT of container NAME's image, as a JSON list or space-separated words ("" for none), instead of reading it from the registry (repeatable)`)
	f.StringArrayVar(&o.cmds, "cmd", nil, `NAME=WORDS: the CMD of container NAME's image, needed with --entrypoint when NAME has no args (repeatable)`)
	f.BoolVar(&o.offline, "offline", false, "never look an image's ENTRYPOINT/CMD up in its registry (by default they are, for containers without command, with the docker config's credentials)")
	f.StringVar(&o.platform, "platform", "", "OS/ARCH[/VARIANT]: read the command of this platform's image of a multi-platform image (by default every platform must run the same one)")
	f.StringArrayVar(&o.pullSecrets, "pull-secret", nil, "an image pull secret to read images with, from the cluster (namespace -n or the context's; repeatable)")
	f.BoolVar(&o.cluster, "cluster", false, "also read images with the imagePullSecrets the pod templates name, from the cluster (in each object's namespace, else -n)")
	f.BoolVarP(&o.inPlace, "in-place", "i", false, "write each changed file back instead of printing the result")
	f.BoolVar(&o.rbac, "rbac", false, "print the ServiceAccount, Role (pods: list, watch) and RoleBinding koordinator needs first (those of deploy/rbac.yaml), and set serviceAccountName: "+rbacServiceAccount+" in wired pods that name none")
	return cmd
}

// registryOptions are added to every registry request; tests keep them off the network.
var registryOptions []remote.Option

// lookupTimeout bounds the registry lookups of one run.
const lookupTimeout = 2 * time.Minute

func (o *injectOptions) run(ctx context.Context, streams genericiooptions.IOStreams) error {
	entrypoints, err := wordsByName("--entrypoint", o.entrypoints)
	if err != nil {
		return err
	}
	cmds, err := wordsByName("--cmd", o.cmds)
	if err != nil {
		return err
	}
	for _, name := range o.files.files {
		if name == "-" && o.inPlace {
			return errors.New("--in-place cannot write back to stdin (-f -)")
		}
	}
	if o.rbac && o.inPlace {
		return errors.New("--rbac adds objects, which --in-place has no file for: apply deploy/rbac.yaml's objects yourself, or run without --in-place")
	}
	ins, err := o.files.read(streams.In)
	if err != nil {
		return err
	}
	looked := map[string]inject.ImageConfig{} // by image reference, from the registry
	opts := inject.Options{
		Sidecars: o.sidecars, Mains: o.mains, StopDelay: o.stopDelay, StartTimeout: o.startTimeout, Image: o.image,
		ServiceAccount: map[bool]string{true: rbacServiceAccount}[o.rbac],
		ImageConfigs: func(c *corev1.Container) (inject.ImageConfig, bool) {
			ep, ok := entrypoints[c.Name]
			if !ok {
				cfg, ok := looked[c.Image]
				return cfg, ok
			}
			cmd, ok := cmds[c.Name]
			if !ok && len(c.Args) == 0 {
				return inject.ImageConfig{}, false // CMD is needed and unknown: never guess it
			}
			return inject.ImageConfig{Entrypoint: ep, Cmd: cmd}, true
		},
	}

	o.registry.Options = registryOptions
	if o.platform != "" {
		p, err := v1.ParsePlatform(o.platform)
		if err != nil {
			return fmt.Errorf("--platform %q: %w", o.platform, err)
		}
		o.registry.Platform = p
	}
	pass := injectAll(ins, opts, o.offline)
	if len(pass.lookups) > 0 && !o.offline {
		// Read what the images run from their registries, then wire again with it.
		ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		defer cancel()
		if err := o.readPullSecrets(ctx, pass.secrets); err != nil {
			return err
		}
		var failed []string
		for _, image := range slices.Sorted(maps.Keys(pass.lookups)) {
			cfg, err := o.registry.Lookup(ctx, image)
			if err != nil {
				failed = append(failed, fmt.Sprintf("%s (for %s): %v", image, strings.Join(pass.lookups[image], ", "), err))
				continue
			}
			looked[image] = cfg
		}
		pass = injectAll(ins, opts, o.offline)
		pass.problems = append(pass.problems, failed...)
	}
	for _, n := range pass.notes {
		fmt.Fprintln(streams.ErrOut, n)
	}
	if len(pass.problems) > 0 {
		for _, p := range pass.problems[:len(pass.problems)-1] {
			fmt.Fprintln(streams.ErrOut, "error:", p)
		}
		return errors.New(pass.problems[len(pass.problems)-1])
	}
	changes := pass.changes
	for _, c := range changes {
		if err := c.t.Set(c.v); err != nil {
			return err
		}
	}
	outputs := make([][]byte, len(ins))
	for i, in := range ins {
		if outputs[i], err = manifest.Format(in.docs); err != nil {
			return fmt.Errorf("%s: %w", in.name, err)
		}
	}
	if o.inPlace {
		for i, in := range ins {
			if !manifest.Changed(in.docs) {
				continue
			}
			if err := writeInPlace(in.name, outputs[i], in.mode); err != nil {
				return err
			}
			fmt.Fprintf(streams.ErrOut, "%s: wired\n", in.name)
		}
		return nil
	}
	if o.rbac {
		outputs = append([][]byte{[]byte(rbacObjects)}, outputs...)
	}
	for i, out := range outputs {
		if i > 0 {
			if prev := outputs[i-1]; len(prev) > 0 && prev[len(prev)-1] != '\n' {
				fmt.Fprintln(streams.Out)
			}
			fmt.Fprintln(streams.Out, "---")
		}
		if _, err := streams.Out.Write(out); err != nil {
			return err
		}
	}
	return nil
}

type change struct {
	t *manifest.Template
	v corev1.PodTemplateSpec
}

// injection is one pass of inject over every template of every input.
type injection struct {
	changes  []change
	notes    []string            // for stderr, with where they come from
	problems []string            // errors, one line each
	lookups  map[string][]string // image -> the containers ("file: object: container") whose command needs it
	secrets  []secretRef         // the imagePullSecrets of the templates with lookups, in order
}

// secretRef is a pull secret a pod template names; namespace "" is the default one.
type secretRef struct{ namespace, name string }

func injectAll(ins []*input, opts inject.Options, offline bool) injection {
	pass := injection{lookups: map[string][]string{}}
	for _, in := range ins {
		for _, d := range in.docs {
			ts, err := d.Templates()
			if err != nil {
				pass.problems = append(pass.problems, fmt.Sprintf("%s: document %d: %v", in.name, d.Index, err))
				continue
			}
			for _, t := range ts {
				where := fmt.Sprintf("%s: %s", in.name, t.Where)
				res, err := inject.Template(t.Value, opts)
				for _, n := range res.Notes {
					pass.notes = append(pass.notes, fmt.Sprintf("%s: %s", where, n))
				}
				var need *inject.NeedImageConfigError
				switch {
				case errors.As(err, &need):
					for _, c := range need.Containers {
						image := imageOf(t.Value.Spec, c)
						pass.lookups[image] = append(pass.lookups[image], where+": "+c)
					}
					for _, ref := range t.Value.Spec.ImagePullSecrets {
						if s := (secretRef{t.Namespace, ref.Name}); !slices.Contains(pass.secrets, s) {
							pass.secrets = append(pass.secrets, s)
						}
					}
					pass.problems = append(pass.problems, fmt.Sprintf("%s: %s", where, needMessage(need, offline)))
				case err != nil:
					pass.problems = append(pass.problems, fmt.Sprintf("%s: %v", where, err))
				case res.Skipped != "":
					pass.notes = append(pass.notes, fmt.Sprintf("%s: left as it is: %s", where, res.Skipped))
				case res.Changed:
					pass.changes = append(pass.changes, change{t, res.Template})
					// What inject cannot fix on its own (no ServiceAccount, a spec annotation
					// that would hang): lint's findings on the result, as warnings.
					for _, f := range lint.Template(res.Template) {
						container := ""
						if f.Container != "" {
							container = "container " + f.Container + ": "
						}
						pass.notes = append(pass.notes, fmt.Sprintf("%s: warning: %s%s; fix: %s [%s]", where, container, f.Message, f.Fix, f.Rule))
					}
				}
			}
		}
	}
	return pass
}

// readPullSecrets adds the pull secrets --pull-secret names and, with --cluster, those of the
// templates whose images are looked up, to the keychain (the docker config's comes after them).
func (o *injectOptions) readPullSecrets(ctx context.Context, fromTemplates []secretRef) error {
	var refs []secretRef
	for _, name := range o.pullSecrets {
		refs = append(refs, secretRef{"", name})
	}
	if o.cluster {
		refs = append(refs, fromTemplates...)
	}
	if len(refs) == 0 {
		return nil
	}
	cfg, err := o.kube.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("reading pull secrets: %w", err)
	}
	namespace, _, err := o.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return fmt.Errorf("reading pull secrets: %w", err)
	}
	get, err := newSecretGetter(cfg)
	if err != nil {
		return fmt.Errorf("reading pull secrets: %w", err)
	}
	var keychain imageconfig.PullSecrets
	for _, ref := range refs {
		if ref.namespace == "" {
			ref.namespace = namespace
		}
		secret, err := get(ctx, ref.namespace, ref.name)
		if err != nil {
			return fmt.Errorf("reading pull secret %s/%s: %w", ref.namespace, ref.name, err)
		}
		if err := keychain.AddSecret(secret); err != nil {
			return err
		}
	}
	o.registry.Keychain = authn.NewMultiKeychain(&keychain, authn.DefaultKeychain)
	return nil
}

// newSecretGetter reads Secrets from the cluster; tests replace it.
var newSecretGetter = func(cfg *rest.Config) (func(ctx context.Context, namespace, name string) (*corev1.Secret, error), error) {
	client, err := coreclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
		return client.Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	}, nil
}

func imageOf(ps corev1.PodSpec, container string) string {
	for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// needMessage says which containers need their image's ENTRYPOINT/CMD and how to give them.
func needMessage(e *inject.NeedImageConfigError, offline bool) string {
	why := "their registry did not tell (below)"
	if offline {
		why = "--offline refuses to look images up"
	}
	return fmt.Sprintf("container(s) %s have no command, so their image's ENTRYPOINT (and CMD, without args) are needed and %s: give --entrypoint NAME=... (and --cmd NAME=...), or set command in the manifest",
		strings.Join(e.Containers, ", "), why)
}

// wordsByName reads NAME=WORDS flags; WORDS is a JSON list of strings or space-separated words.
func wordsByName(flag string, values []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, v := range values {
		name, words, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s %q: write NAME=WORDS, like %s main='[\"/app\", \"--serve\"]'", flag, v, flag)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s names container %q twice", flag, name)
		}
		list := strings.Fields(words)
		if t := strings.TrimSpace(words); strings.HasPrefix(t, "[") {
			list = nil
			if err := json.Unmarshal([]byte(t), &list); err != nil {
				return nil, fmt.Errorf("%s %s: %q is not a JSON list of strings: %w", flag, name, t, err)
			}
		}
		out[name] = list
	}
	return out, nil
}

// rbacServiceAccount and rbacObjects are deploy/rbac.yaml's (a test keeps them equal): what
// koordinator needs, listing and watching its own pod, nothing else.
const (
	rbacServiceAccount = "koordinator"
	rbacObjects        = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: koordinator
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: koordinator
rules:
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: koordinator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: koordinator
subjects:
  - kind: ServiceAccount
    name: koordinator
`
)
