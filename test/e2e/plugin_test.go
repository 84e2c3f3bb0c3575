package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The plain (un-wired) examples that kubectl-koordinator's golden tests inject: the Job of
// deploy/job-example.yaml, and deploy/cronjob-example.yaml with its choice in annotations.
const (
	plainJob     = "cmd/kubectl-koordinator/testdata/inject/job.yaml"
	plainCronJob = "cmd/kubectl-koordinator/testdata/inject/cronjob-example.yaml"
)

// buildPlugin builds kubectl-koordinator from this tree into the test's temporary directory.
func buildPlugin(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl-koordinator")
	build := exec.Command("go", "build", "-trimpath", "-o", path, "./cmd/kubectl-koordinator")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building kubectl-koordinator: %v\n%s", err, out)
	}
	return path
}

// kubectlKoordinator runs the built plugin from the repository's root, as a user would; it must
// succeed.
func kubectlKoordinator(t *testing.T, plugin string, args ...string) string {
	t.Helper()
	code, out, stderr := runPlugin(t, plugin, args...)
	if code != 0 {
		t.Fatalf("kubectl koordinator %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	return out
}

func runPlugin(t *testing.T, plugin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(plugin, args...)
	cmd.Dir = repoRoot
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("kubectl koordinator %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errOut.String()
}

// TestPluginInjected: the plain examples, wired by the built plugin and applied with kubectl,
// complete exactly as the hand-wired deploy/ examples do. The plugin is built once for both.
func TestPluginInjected(t *testing.T) {
	parallel(t)
	plugin := buildPlugin(t)

	// The plain Job, its sidecar named with flags.
	t.Run("Job", func(t *testing.T) {
		t.Parallel()
		ns := coordinatedNamespace(t, "e2e-inject-job")
		wired := kubectlKoordinator(t, plugin, "inject", "-f", plainJob, "--sidecar", "proxy", "--stop-delay", "1s")
		created := time.Now()
		kubectl(t, wired, "apply", "-n", ns, "-f", "-")
		waitJobComplete(t, ns, "koordinator-example", 2*time.Minute)
		checkExamplePod(t, ns, jobPod(t, ns, "koordinator-example"), created)
	})

	// lint --cluster asks the API server whether the pod's ServiceAccount may list and watch
	// pods: yes where deploy/rbac.yaml is applied, no in a namespace without it.
	t.Run("LintCluster", func(t *testing.T) {
		t.Parallel()
		granted := coordinatedNamespace(t, "e2e-lint-granted")
		bare := newNamespace(t, "e2e-lint-bare")
		lint := func(ns string) (int, string, string) {
			return runPlugin(t, plugin, "lint", "--kubeconfig", cp.Kubeconfig(), "--cluster", "-n", ns, "-f", "deploy/job-example.yaml")
		}
		if code, out, errOut := lint(granted); code != 0 {
			t.Errorf("namespace with deploy/rbac.yaml: exit %d\n%s%s", code, out, errOut)
		}
		code, out, errOut := lint(bare)
		if code != 1 || !strings.Contains(out, "its ServiceAccount koordinator may not list, watch pods in namespace "+bare) || !strings.HasSuffix(out, "[rbac]\n") {
			t.Errorf("namespace without it: exit %d\n%s%s", code, out, errOut)
		}
	})

	// The plain CronJob, whose annotations name the sidecar, injected without flags; a Job
	// created from it as users try one out.
	t.Run("CronJob", func(t *testing.T) {
		t.Parallel()
		ns := coordinatedNamespace(t, "e2e-inject-cron")
		wired := kubectlKoordinator(t, plugin, "inject", "-f", plainCronJob)
		kubectl(t, wired, "apply", "-n", ns, "-f", "-")
		created := time.Now()
		kubectl(t, "", "create", "job", "-n", ns, "--from=cronjob/"+cronJob, "injected-run")
		waitJobComplete(t, ns, "injected-run", 2*time.Minute)
		checkExamplePod(t, ns, jobPod(t, ns, "injected-run"), created)
	})
}
