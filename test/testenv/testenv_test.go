package testenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/koordinator-dev/koordinator/test/testenv"
)

// eventually polls cond every 100 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestControlPlane(t *testing.T) {
	if _, err := testenv.FindBinaries(""); errors.Is(err, testenv.ErrNotBuilt) {
		t.Skipf("skipping: %v (once, ~11 min on 2 cores)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	begin := time.Now()
	cp, err := testenv.Start(ctx, testenv.Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("control plane started in %s", time.Since(begin).Round(time.Millisecond))
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if err := cp.Stop(); err != nil {
				t.Errorf("Stop (cleanup): %v", err)
			}
		}
	})
	runDir := cp.Dir()
	if !strings.Contains(runDir, string(filepath.Separator)+filepath.Join(".cache", "run")+string(filepath.Separator)) {
		t.Errorf("run folder %s is not under the repo's .cache/run", runDir)
	}

	// The kubeconfig works as a client would load it.
	kcfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(kcfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kubernetes.NewForConfig(cp.RESTConfig()); err != nil {
		t.Fatalf("RESTConfig: %v", err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != testenv.KubernetesVersion {
		t.Errorf("server version %q, want %q (version stamps missing?)", v.GitVersion, testenv.KubernetesVersion)
	}

	// kubectl, built with the same stamps, talks to it.
	out, err := exec.CommandContext(ctx, cp.Binaries().Kubectl, "--kubeconfig", cp.Kubeconfig(), "version", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	var kv struct {
		ClientVersion, ServerVersion struct{ GitVersion string }
	}
	if err := json.Unmarshal(out, &kv); err != nil || kv.ClientVersion.GitVersion != testenv.KubernetesVersion || kv.ServerVersion.GitVersion != testenv.KubernetesVersion {
		t.Errorf("kubectl version: %v\n%s", err, out)
	}

	// A namespace gets its default ServiceAccount (serviceaccount-controller)
	// and the CA ConfigMap (root-ca-certificate-publisher-controller).
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	eventually(t, 60*time.Second, "default ServiceAccount in "+ns.Name, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	caPEM, err := os.ReadFile(cp.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "kube-root-ca.crt in "+ns.Name+" holding CAFile", func() error {
		cm, err := cs.CoreV1().ConfigMaps(ns.Name).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !bytes.Equal(bytes.TrimSpace([]byte(cm.Data["ca.crt"])), bytes.TrimSpace(caPEM)) {
			return fmt.Errorf("ca.crt differs from CAFile")
		}
		return nil
	})

	// A pod is accepted; with no Node the real scheduler marks it Unschedulable.
	pod, err := cs.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: "busybox", Command: []string{"true"},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	eventually(t, 60*time.Second, "pod "+pod.Name+" marked Unschedulable by kube-scheduler", func() error {
		p, err := cs.CoreV1().Pods(ns.Name).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", p.Status.Conditions)
	})

	// TokenRequest works, and RBAC is enforced for the token.
	token, err := cp.CreateToken(ctx, ns.Name, "default", testenv.TokenRequest{Expiration: 10 * time.Minute})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cp.Host()+"/api/v1/namespaces/"+ns.Name+"/pods", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	tokenClient := &http.Client{Transport: &http.Transport{TLSClientConfig: cp.HTTPClient().Transport.(*http.Transport).TLSClientConfig.Clone()}}
	tokenClient.Transport.(*http.Transport).TLSClientConfig.Certificates = nil
	resp, err := tokenClient.Do(req)
	if err != nil {
		t.Fatalf("list pods with the token: %v", err)
	}
	resp.Body.Close()
	tokenClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("list pods as system:serviceaccount:%s:default without a RoleBinding: %s, want 403", ns.Name, resp.Status)
	}

	// The apiserver goes away and comes back on the same address.
	oldHost := cp.Host()
	t0 := time.Now()
	if err := cp.StopAPIServer(); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	t.Logf("apiserver stopped in %s", time.Since(t0).Round(time.Millisecond))
	if cp.Running(testenv.APIServer) {
		t.Errorf("apiserver still running after StopAPIServer")
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); err == nil {
		t.Errorf("API answered while the apiserver was stopped")
	}
	t0 = time.Now()
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	t.Logf("apiserver restarted in %s", time.Since(t0).Round(time.Millisecond))
	if cp.Host() != oldHost {
		t.Errorf("host changed across restart: %s -> %s", oldHost, cp.Host())
	}
	eventually(t, 30*time.Second, "API answers after restart", func() error {
		_, err := cs.CoreV1().Pods(ns.Name).Get(ctx, pod.Name, metav1.GetOptions{})
		return err
	})
	// The controllers still work after the outage.
	ns2, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "testenv-after-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace after restart: %v", err)
	}
	eventually(t, 60*time.Second, "default ServiceAccount in "+ns2.Name+" after restart", func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns2.Name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})

	// Stop leaves nothing behind.
	pids := cp.PIDs()
	if len(pids) < 5 { // etcd, apiserver twice, controller-manager, scheduler
		t.Errorf("PIDs() = %v, want at least 5", pids)
	}
	t0 = time.Now()
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	t.Logf("control plane stopped in %s", time.Since(t0).Round(time.Millisecond))
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill -0: %v)", pid, err)
		}
	}
	// Nothing anywhere still runs with the run folder in its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(runDir)) {
			t.Errorf("%s still mentions the run folder: %q", f, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder %s still exists after Stop (%v)", runDir, err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A start failure cleans up and reports the failing component's log.
func TestStartFailureReportsLog(t *testing.T) {
	if _, err := testenv.FindBinaries(""); errors.Is(err, testenv.ErrNotBuilt) {
		t.Skipf("skipping: %v (once, ~11 min on 2 cores)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := testenv.Start(ctx, testenv.Options{Logf: t.Logf, APIServerFlags: []string{"--no-such-flag-for-testenv"}})
	if err == nil {
		t.Fatal("Start with a bad apiserver flag succeeded")
	}
	t.Logf("error (as expected):\n%v", err)
	if !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "no-such-flag-for-testenv") {
		t.Errorf("error does not name the component and carry its log tail: %v", err)
	}
	// The error names the log; no process may still run from that run folder
	// (etcd had started before the apiserver failed).
	_, logPath, ok := strings.Cut(err.Error(), "--- last lines of ")
	logPath, _, _ = strings.Cut(logPath, " ---")
	if !ok || !strings.HasSuffix(logPath, filepath.Join("logs", "kube-apiserver.log")) {
		t.Fatalf("error does not name the log file: %v", err)
	}
	runDir := filepath.Dir(filepath.Dir(logPath))
	if _, err := os.Stat(runDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder %s left behind after a failed Start (%v)", runDir, err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte(runDir)) {
			t.Errorf("%s still mentions the run folder: %q", f, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
}
