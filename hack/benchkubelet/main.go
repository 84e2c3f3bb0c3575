// Command benchkubelet measures, on the real test node (test/kubelet: kubelet, containerd and
// runc, root), the example Job with koordinator (copied by an init container, and mounted from an
// image volume) side by side with the same Job written with a native sidecar and no koordinator,
// interleaved in one run:
//
//   - pod start → main running: from the Job's creation to main's first line (the runtime's
//     timestamp of it);
//   - main exit → Job Complete: from main's last line to the Job's Complete condition (polled
//     every 50 ms);
//   - deletion with a sidecar that must outlive main: a Job whose main works 60 s is deleted once
//     main runs; from the delete call to the pod gone, and whether the sidecar's child outlived
//     main's;
//   - what the init container's copy costs each pod: disk (the binary in the emptyDir) and time
//     (`koordinator --install` into a folder on the node's disk);
//   - memory as the kubelet reports it (/stats/summary through the apiserver's node proxy): the
//     sidecar container's working set while main works, with and without koordinator.
//
// It prints the section and, with -doc, writes it to docs/performance.md. Without root or the
// built node it says why and exits 0 (make bench runs it last).
//
//	go run ./hack/benchkubelet -bin bin/koordinator -runs 5 -doc docs/performance.md
package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
	"github.com/koordinator-dev/koordinator/test/kubelet"
	"github.com/koordinator-dev/koordinator/test/node"
	"github.com/koordinator-dev/koordinator/test/testenv"
)

const section = "## On a real kubelet: koordinator beside a native sidecar"

//go:embed section.md.tmpl
var sectionTemplate string

func main() {
	bin := flag.String("bin", "bin/koordinator", "the koordinator binary")
	runs := flag.Int("runs", 5, "rounds; each runs both Jobs and both deletions")
	doc := flag.String("doc", "", "markdown file whose \""+section+"\" section is written")
	flag.Parse()
	if !kubelet.Inside() {
		os.Exit(outside())
	}
	if err := run(*bin, *runs, *doc); err != nil {
		fmt.Fprintln(os.Stderr, "benchkubelet:", err)
		os.Exit(1)
	}
}

// outside runs the bench again as PID 1 of the real node's namespaces.
func outside() int {
	if why := kubelet.Unavailable(); why != "" {
		fmt.Println("benchkubelet: skipped:", why)
		return 0
	}
	code, err := kubelet.RunInside(os.Stdout, os.Stderr, logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchkubelet:", err)
		return 1
	}
	return code
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchkubelet: "+format+"\n", args...)
}

type bench struct {
	client kubernetes.Interface
	cp     *testenv.ControlPlane
	nd     *kubelet.Node
	root   string
}

func run(bin string, runs int, doc string) error {
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if err := kubelet.Enter(); err != nil {
		return err
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cp, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer cp.Stop()
	nd, err := kubelet.Start(ctx, cp, kubelet.Options{
		KoordinatorBinary: bin,
		KoordinatorImages: []string{"ghcr.io/koordinator-dev/koordinator:latest"},
		BusyboxImages:     []string{"busybox:1.37"},
		Logf:              logf,
	})
	if err != nil {
		return err
	}
	defer nd.Stop()
	client, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return err
	}
	b := &bench{client: client, cp: cp, nd: nd, root: root}

	variants := []string{withKoordinator, withImageVolume, withNativeSidecar}
	res := map[string]*variantResult{}
	for _, v := range variants {
		res[v] = &variantResult{}
	}
	// A first Job of each shape warms the node (images unpacked, first sandbox), unmeasured.
	for _, v := range variants {
		if _, err := b.jobRun(v, "warm"); err != nil {
			return err
		}
	}
	for i := 0; i < runs; i++ {
		// Each round in another order: a variant never always follows the same one.
		order := append(slices.Clone(variants[i%len(variants):]), variants[:i%len(variants)]...)
		for _, v := range order {
			r, err := b.jobRun(v, fmt.Sprint(i))
			if err != nil {
				return err
			}
			res[v].add(r)
			d, err := b.deletionRun(v, fmt.Sprint(i))
			if err != nil {
				return err
			}
			res[v].addDeletion(d)
			logf("round %d %s: main running %s (proxy running %s, ready → main %s), main exit → Complete %s, deletion %s (sidecar outlived main: %v), sidecar working set %s",
				i+1, v, ms(r.mainRunning), ms(r.proxyRunning), ms(r.gate), ms(r.complete), ms(d.gone), d.sidecarOutlived, mib(r.workingSet))
		}
	}
	copyTime, err := installTime(bin, filepath.Join(nd.Dir(), "install-bench"), 20)
	if err != nil {
		return err
	}
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	return writeSection(doc, report{
		Machine:     benchdoc.ThisMachine(info.GoVersion),
		Kubernetes:  testenv.KubernetesVersion,
		Runs:        runs,
		Koordinator: res[withKoordinator].summary(),
		ImageVolume: res[withImageVolume].summary(),
		Native:      res[withNativeSidecar].summary(),
		CopyTime:    ms(copyTime),
		CopyBytes:   st.Size(),
	})
}

const (
	withKoordinator   = "koordinator"
	withImageVolume   = "koordinator from an image volume"
	withNativeSidecar = "native sidecar"
)

// jobResult is one run of the example Job.
type jobResult struct {
	mainRunning, complete time.Duration
	// proxyRunning: the Job's creation → the proxy's first line; gate: the proxy's "ready" line →
	// main's first line (the start dependency's way through the node, and the API for koordinator).
	proxyRunning, gate time.Duration
	workingSet         uint64 // the sidecar container's, while main works
}

// deletionResult is one deletion of a running pod.
type deletionResult struct {
	gone            time.Duration
	sidecarOutlived bool
}

type variantResult struct {
	jobs      []jobResult
	deletions []deletionResult
}

func (v *variantResult) add(r jobResult)              { v.jobs = append(v.jobs, r) }
func (v *variantResult) addDeletion(d deletionResult) { v.deletions = append(v.deletions, d) }

// startedJob is a Job of one variant, created in a namespace of its own, and its pod.
type startedJob struct {
	ns, name, pod string
	created       time.Time // just before the Job was created
}

// startJob creates the Job of variant v whose main works `work` seconds, in a fresh namespace
// (deleted by the returned cleanup), and waits for its pod.
func (b *bench) startJob(v, what string, work int) (startedJob, func(), error) {
	ns, err := b.namespace(v, what)
	if err != nil {
		return startedJob{}, func() {}, err
	}
	cleanup := func() {
		_ = b.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}
	job, err := b.job(v, work)
	if err != nil {
		return startedJob{}, cleanup, err
	}
	j := startedJob{ns: ns, name: job.Name, created: time.Now()}
	if _, err := b.client.BatchV1().Jobs(ns).Create(context.Background(), job, metav1.CreateOptions{}); err != nil {
		return j, cleanup, err
	}
	j.pod, err = b.waitPod(ns, job.Name)
	return j, cleanup, err
}

// jobRun runs the example Job of variant v to completion and reads its figures.
func (b *bench) jobRun(v, round string) (jobResult, error) {
	j, cleanup, err := b.startJob(v, "job-"+round, 3)
	defer cleanup()
	if err != nil {
		return jobResult{}, err
	}
	ns, pod, created := j.ns, j.pod, j.created
	var r jobResult
	running, err := b.waitLine(ns, pod, "main", "main: working")
	if err != nil {
		return r, err
	}
	r.mainRunning = running.Sub(created)
	proxyStarted, err := b.waitLine(ns, pod, "proxy", "proxy: starting")
	if err != nil {
		return r, err
	}
	proxyReady, err := b.waitLine(ns, pod, "proxy", "proxy: ready")
	if err != nil {
		return r, err
	}
	r.proxyRunning, r.gate = proxyStarted.Sub(created), running.Sub(proxyReady)
	if r.workingSet, err = b.workingSet(ns, pod, "proxy"); err != nil {
		return r, err
	}
	complete, err := b.waitComplete(ns, j.name)
	if err != nil {
		return r, err
	}
	done, err := b.waitLine(ns, pod, "main", "main: done")
	if err != nil {
		return r, err
	}
	r.complete = complete.Sub(done)
	return r, nil
}

// deletionRun creates a Job of variant v whose main works 60 s, deletes its pod once main runs,
// and times the pod's end.
func (b *bench) deletionRun(v, round string) (deletionResult, error) {
	ctx := context.Background()
	j, cleanup, err := b.startJob(v, "delete-"+round, 60)
	defer cleanup()
	if err != nil {
		return deletionResult{}, err
	}
	ns, pod := j.ns, j.pod
	if _, err := b.waitLine(ns, pod, "main", "main: working"); err != nil {
		return deletionResult{}, err
	}
	deleted := time.Now()
	if err := b.client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		return deletionResult{}, err
	}
	for {
		_, err := b.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			break
		}
		if time.Since(deleted) > 2*time.Minute {
			return deletionResult{}, fmt.Errorf("%s: pod %s not gone 2 min after its deletion", v, pod)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := deletionResult{gone: time.Since(deleted)}
	mainStop, ok1 := findLine(b.nd.LogLines(ns, pod, "main"), "main: stopping")
	proxyStop, ok2 := findLine(b.nd.LogLines(ns, pod, "proxy"), "proxy: stopping")
	d.sidecarOutlived = ok1 && ok2 && proxyStop.After(mainStop)
	return d, nil
}

func (b *bench) namespace(v, what string) (string, error) {
	prefix := map[string]string{withKoordinator: "bench-koordinator-", withImageVolume: "bench-image-volume-", withNativeSidecar: "bench-native-"}[v]
	ns, err := b.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + what + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	if v != withNativeSidecar {
		if err := b.applyRBAC(ns.Name); err != nil {
			return "", err
		}
	}
	return ns.Name, nil
}

// job is deploy/job-example.yaml as users copy it (koordinator), deploy/job-image-volume-example.yaml
// (koordinator from an image volume: no init container, no copy), or the same Job with the proxy
// as a native sidecar gated by a startup probe on the same file, so main starts once the proxy
// is ready in both, and no koordinator. main works `work` seconds and leaves on SIGTERM in both.
func (b *bench) job(v string, work int) (*batchv1.Job, error) {
	manifest := "job-example.yaml"
	if v == withImageVolume {
		manifest = "job-image-volume-example.yaml"
	}
	raw, err := os.ReadFile(filepath.Join(b.root, "deploy", manifest))
	if err != nil {
		return nil, err
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(raw, &job); err != nil {
		return nil, err
	}
	spec := &job.Spec.Template.Spec
	mainScript := fmt.Sprintf("trap 'echo main: stopping; exit 143' TERM\necho main: working\nsleep %d & wait $!\necho main: done\n", work)
	for i := range spec.Containers {
		if spec.Containers[i].Name == "main" {
			spec.Containers[i].Args = []string{mainScript}
		}
	}
	if v != withNativeSidecar {
		return &job, nil
	}
	var proxy, main corev1.Container
	for _, c := range spec.Containers {
		c.Command = c.Command[1:] // drop /koordinator/koordinator
		c.Env, c.VolumeMounts = nil, nil
		if c.Name == "proxy" {
			proxy = c
		} else {
			main = c
		}
	}
	always := corev1.ContainerRestartPolicyAlways
	proxy.RestartPolicy = &always
	proxy.StartupProbe = proxy.ReadinessProbe.DeepCopy()
	spec.InitContainers = []corev1.Container{proxy}
	spec.Containers = []corev1.Container{main}
	spec.Volumes = nil
	spec.ServiceAccountName = ""
	return &job, nil
}

func (b *bench) applyRBAC(ns string) error {
	return testenv.Apply(context.Background(), b.client, ns, filepath.Join(b.root, "deploy", "rbac.yaml"))
}

func (b *bench) waitPod(ns, job string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pods, err := b.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + job})
		if err == nil && len(pods.Items) > 0 {
			return pods.Items[0].Name, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("%s: no pod for Job %s", ns, job)
}

// waitLine waits for a container's line and returns the runtime's timestamp of it.
func (b *bench) waitLine(ns, pod, container, text string) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if at, ok := findLine(b.nd.LogLines(ns, pod, container), text); ok {
			return at, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s/%s: %s never wrote %q", ns, pod, container, text)
}

func findLine(lines []node.LogLine, text string) (time.Time, bool) {
	for _, l := range lines {
		if l.Text == text {
			return l.Time, true
		}
	}
	return time.Time{}, false
}

func (b *bench) waitComplete(ns, job string) (time.Time, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		j, err := b.client.BatchV1().Jobs(ns).Get(context.Background(), job, metav1.GetOptions{})
		if err == nil {
			for _, c := range j.Status.Conditions {
				if c.Status == corev1.ConditionTrue && c.Type == batchv1.JobComplete {
					return time.Now(), nil
				}
				if c.Status == corev1.ConditionTrue && c.Type == batchv1.JobFailed {
					return time.Time{}, fmt.Errorf("%s: Job %s failed: %s", ns, job, c.Message)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("%s: Job %s not complete after 2 min", ns, job)
}

// workingSet reads a container's working set from the kubelet's summary API, through the
// apiserver's node proxy, as kubectl top and the metrics pipeline do; it retries until the
// kubelet has a figure for the container (its stats lag a container's start by a few seconds).
func (b *bench) workingSet(ns, pod, container string) (uint64, error) {
	type summary struct {
		Pods []struct {
			PodRef struct {
				Name, Namespace string
			} `json:"podRef"`
			Containers []struct {
				Name   string `json:"name"`
				Memory *struct {
					WorkingSetBytes *uint64 `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"containers"`
		} `json:"pods"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		raw, err := b.client.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", kubelet.NodeName, "proxy", "stats", "summary").DoRaw(context.Background())
		if err == nil {
			var s summary
			if err := json.Unmarshal(raw, &s); err != nil {
				return 0, err
			}
			for _, p := range s.Pods {
				if p.PodRef.Name != pod || p.PodRef.Namespace != ns {
					continue
				}
				for _, c := range p.Containers {
					if c.Name == container && c.Memory != nil && c.Memory.WorkingSetBytes != nil && *c.Memory.WorkingSetBytes > 0 {
						return *c.Memory.WorkingSetBytes, nil
					}
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return 0, nil // no figure: reported as such
}

// installTime is the median time of `koordinator --install` into a folder on the node's disk,
// what the init container does in each pod.
func installTime(bin, dir string, n int) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	var times []time.Duration
	for i := 0; i < n; i++ {
		target := filepath.Join(dir, fmt.Sprint(i)) // the emptyDir: a fresh, empty folder
		if err := os.Mkdir(target, 0o755); err != nil {
			return 0, err
		}
		start := time.Now()
		if out, err := exec.Command(bin, "--install", target).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%s --install: %v: %s", bin, err, strings.TrimSpace(string(out)))
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// --- the report --------------------------------------------------------------------------------

type report struct {
	Machine                          benchdoc.Machine
	Kubernetes                       string
	Runs                             int
	Koordinator, ImageVolume, Native summary
	CopyTime                         string
	CopyBytes                        int64
}

type summary struct {
	MainRunning, ProxyRunning, Gate, Complete, Deletion figure
	Outlived                                            string
	WorkingSet                                          string
}

type figure struct{ Median, Max string }

func (v *variantResult) summary() summary {
	pick := func(f func(int) time.Duration, n int) figure {
		var d []time.Duration
		for i := 0; i < n; i++ {
			d = append(d, f(i))
		}
		slices.Sort(d)
		return figure{Median: ms(d[len(d)/2]), Max: ms(d[len(d)-1])}
	}
	s := summary{
		MainRunning:  pick(func(i int) time.Duration { return v.jobs[i].mainRunning }, len(v.jobs)),
		ProxyRunning: pick(func(i int) time.Duration { return v.jobs[i].proxyRunning }, len(v.jobs)),
		Gate:         pick(func(i int) time.Duration { return v.jobs[i].gate }, len(v.jobs)),
		Complete:     pick(func(i int) time.Duration { return v.jobs[i].complete }, len(v.jobs)),
		Deletion:     pick(func(i int) time.Duration { return v.deletions[i].gone }, len(v.deletions)),
	}
	outlived := 0
	for _, d := range v.deletions {
		if d.sidecarOutlived {
			outlived++
		}
	}
	s.Outlived = fmt.Sprintf("%d of %d", outlived, len(v.deletions))
	var ws []uint64
	for _, j := range v.jobs {
		if j.workingSet > 0 {
			ws = append(ws, j.workingSet)
		}
	}
	s.WorkingSet = "no figure"
	if len(ws) > 0 {
		slices.Sort(ws)
		s.WorkingSet = mib(ws[len(ws)/2])
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func writeSection(doc string, r report) error {
	tmpl, err := template.New("section").Parse(sectionTemplate)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, r); err != nil {
		return err
	}
	fmt.Print(out.String())
	if doc == "" {
		return nil
	}
	return benchdoc.Replace(doc, section, "## Scale", out.String())
}
