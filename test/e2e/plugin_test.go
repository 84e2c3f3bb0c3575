package e2e

import (
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

// kubectlKoordinator runs the built plugin from the repository's root, as a user would.
func kubectlKoordinator(t *testing.T, plugin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(plugin, args...)
	cmd.Dir = repoRoot
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl koordinator %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
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
