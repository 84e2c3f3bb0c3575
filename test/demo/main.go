// Command demo runs deploy/job-example.yaml, as a user would apply it, on a local control plane
// (test/testenv) and a process-based node (test/node), prints what happened when, and tears
// everything down. `make demo` runs it after building koordinator and the control plane. With
// -kubelet (make demo KUBELET=1, root) the node is a real kubelet with containerd and runc
// (test/kubelet), in namespaces of its own.
//
//	go run ./test/demo -koordinator bin/koordinator [-kubelet]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/koordinator-dev/koordinator/test/kubelet"
	"github.com/koordinator-dev/koordinator/test/node"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

const (
	namespace = "demo"
	jobName   = "koordinator-example"
)

func main() {
	bin := flag.String("koordinator", "bin/koordinator", "the koordinator binary to run in the pod")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up when the Job has not completed by then")
	realNode := flag.Bool("kubelet", false, "run the Job on a real kubelet with containerd and runc (needs root and make kubelet-node)")
	flag.Parse()
	if *realNode && !kubelet.Inside() {
		os.Exit(runInside())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *bin, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// runInside runs the demo again as PID 1 of the real node's namespaces.
func runInside() int {
	if why := kubelet.Unavailable(); why != "" {
		fmt.Fprintln(os.Stderr, "demo:", why)
		return 1
	}
	code, err := kubelet.RunInside(os.Stdout, os.Stderr, func(format string, args ...any) {
		say(fmt.Sprintf(format, args...))
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return code
}

// logSource is the node, either one: what a container wrote.
type logSource interface {
	Logs(namespace, pod, container string) string
}

func run(ctx context.Context, bin string, timeout time.Duration) error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if kubelet.Inside() {
		if err := kubelet.Enter(); err != nil {
			return err
		}
	}
	work, err := os.MkdirTemp(filepath.Join(root, ".cache"), "demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	say("starting a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler")
	cp, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the control plane")
		_ = cp.Stop()
	}()
	var n logSource
	if kubelet.Inside() {
		say("starting a real node: containerd, runc and kubelet " + testenv.KubernetesVersion)
		rn, err := kubelet.Start(ctx, cp, kubelet.Options{
			KoordinatorBinary: bin,
			KoordinatorImages: []string{"ghcr.io/koordinator-dev/koordinator:latest"},
			BusyboxImages:     []string{"busybox:1.37"},
		})
		if err != nil {
			return err
		}
		defer func() {
			say("stopping the node")
			rn.Stop()
		}()
		n = rn
	} else {
		say("starting a node that runs each container as a local process (own namespaces, fresh root)")
		pn, err := node.Start(ctx, cp, node.Options{KoordinatorBinary: bin, WorkDir: filepath.Join(work, "node")})
		if err != nil {
			return err
		}
		defer func() {
			say("stopping the node")
			pn.Stop()
		}()
		n = pn
	}

	kubectl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, cp.Binaries().Kubectl, append([]string{"--kubeconfig", cp.Kubeconfig()}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		fmt.Printf("$ kubectl %s\n", strings.Join(args, " "))
		return cmd.Run()
	}
	if err := kubectl("create", "namespace", namespace); err != nil {
		return err
	}
	if err := kubectl("apply", "-n", namespace, "-f", filepath.Join(root, "deploy", "rbac.yaml")); err != nil {
		return err
	}
	created := time.Now()
	if err := kubectl("apply", "-n", namespace, "-f", filepath.Join(root, "deploy", "job-example.yaml")); err != nil {
		return err
	}

	client, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return err
	}
	say("waiting for the Job to complete")
	_, complete, err := waitComplete(ctx, client, timeout)
	if err != nil {
		explain(client, n)
		return err
	}
	pods, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Errorf("listing the Job's pod: %v (%d pods)", err, len(pods.Items))
	}
	pod := pods.Items[0]
	printTimeline(created, complete, &pod, n)
	return nil
}

func say(msg string) { fmt.Printf("==> %s\n", msg) }

// explain prints what the Job's pods show when it did not complete: states and logs.
func explain(client kubernetes.Interface, n logSource) {
	pods, err := client.CoreV1().Pods(namespace).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + jobName})
	if err != nil {
		return
	}
	for _, pod := range pods.Items {
		fmt.Printf("\npod %s: phase %s\n", pod.Name, pod.Status.Phase)
		statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
		for _, st := range statuses {
			state, _ := json.Marshal(st.State)
			fmt.Printf("  %s: ready=%v restarts=%d %s\n", st.Name, st.Ready, st.RestartCount, state)
			for _, line := range strings.Split(strings.TrimSpace(n.Logs(pod.Namespace, pod.Name, st.Name)), "\n") {
				fmt.Printf("    | %s\n", line)
			}
		}
	}
}

// waitComplete polls the Job until the Job controller marks it Complete; it returns the Job and
// when that was first seen (the condition's own time has whole seconds only).
func waitComplete(ctx context.Context, client kubernetes.Interface, timeout time.Duration) (*batchv1.Job, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		job, err := client.BatchV1().Jobs(namespace).Get(ctx, jobName, metav1.GetOptions{})
		if err == nil {
			for _, c := range job.Status.Conditions {
				if c.Status != corev1.ConditionTrue {
					continue
				}
				switch c.Type {
				case batchv1.JobComplete:
					return job, time.Now(), nil
				case batchv1.JobFailed:
					return nil, time.Time{}, fmt.Errorf("the Job failed: %s", c.Message)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, time.Time{}, errors.New("the Job did not complete in time")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// event is one line of the timeline.
type event struct {
	at   time.Time
	what string
}

// printTimeline reads koordinator's own log lines in both containers (JSON, with nanosecond
// times) and when the Job's completion was seen, relative to when the Job was applied.
func printTimeline(created, complete time.Time, pod *corev1.Pod, n logSource) {
	var events []event
	find := func(container, msg, what string, match func(map[string]any) bool) {
		for _, line := range jsonLines(n.Logs(pod.Namespace, pod.Name, container)) {
			if line["msg"] == msg && (match == nil || match(line)) {
				if t, err := time.Parse(time.RFC3339Nano, fmt.Sprint(line["time"])); err == nil {
					events = append(events, event{t, what})
					return
				}
			}
		}
	}
	find("proxy", "child started", "proxy started", nil)
	find("main", "dependency ready", "main's koordinator saw proxy Ready", nil)
	find("main", "child started", "main started", nil)
	find("main", "child exited", "main exited", nil)
	find("proxy", "stop dependencies exited", "proxy's koordinator saw main exit for good", nil)
	find("proxy", "stopping the child", "proxy sent its stop signal (after stopDelay 1s)", nil)
	find("proxy", "child exited", "proxy exited", nil)
	events = append(events, event{complete, "Job Complete (seen through the API)"})
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	fmt.Printf("\nTimeline of pod %s (t = 0 when the Job was applied):\n", pod.Name)
	for _, e := range events {
		fmt.Printf("  t=%6.2fs  %s\n", e.at.Sub(created).Seconds(), e.what)
	}
	for _, st := range pod.Status.ContainerStatuses {
		if t := st.State.Terminated; t != nil {
			fmt.Printf("  container %-6s exit code %d (%s)\n", st.Name, t.ExitCode, t.Reason)
		}
	}
	fmt.Println()
}

// jsonLines picks the JSON log lines (koordinator's) out of a container's output.
func jsonLines(log string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
