package main

// Memory as the cluster measures it. The kubelet (cAdvisor) reports a container's memory as its
// working set: the memory cgroup's usage less its inactive file pages
// (container_memory_working_set_bytes; what `kubectl top` shows and what eviction ranks by), and
// a pod's the same way from the pod's cgroup. So the benchmark gives each measured wrapper a
// memory cgroup laid out as the kubelet does (one per pod, one per container under it, an init
// container's removed once it has run), all under one cgroup of its own below the one it runs
// in, and removes them at the end. Where it may not (not root, no memory controller), it says
// so and the tables give only the process figures from /proc.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memcg is the benchmark's own memory cgroup.
type memcg struct {
	root string // <the memory hierarchy>/<this process's cgroup>/koordinator-bench-<pid>
	v2   bool   // the unified hierarchy's file names (memory.current, inactive_file)
}

// memcgPrefix names the benchmark's cgroup; the pid after it tells a stale one (its benchmark
// died) from a running one.
const memcgPrefix = "koordinator-bench-"

// newMemcg makes the benchmark's cgroup under the memory cgroup this process runs in; why says
// why not when it returns nil.
func newMemcg() (m *memcg, why string) {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err.Error()
	}
	var base string
	var v2 bool
	for l := range strings.Lines(string(own)) {
		f := strings.SplitN(strings.TrimSpace(l), ":", 3)
		if len(f) != 3 {
			continue
		}
		if ctl := strings.Split(f[1], ","); slices.Contains(ctl, "memory") {
			base, v2 = filepath.Join("/sys/fs/cgroup/memory", f[2]), false
			break
		}
		if f[0] == "0" && f[1] == "" { // the unified hierarchy: memory only if it is enabled there
			dir := filepath.Join("/sys/fs/cgroup", f[2])
			if c, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil && slices.Contains(strings.Fields(string(c)), "memory") {
				base, v2 = dir, true
			}
		}
	}
	if base == "" {
		return nil, "no memory cgroup controller for this process"
	}
	removeStaleMemcgs(base)
	root := filepath.Join(base, memcgPrefix+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, fmt.Sprintf("cannot make a memory cgroup under %s (%v; root, or a delegated cgroup, is needed)", base, err)
	}
	m = &memcg{root: root, v2: v2}
	if v2 { // children get the memory controller only if it is enabled below root
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			_ = syscall.Rmdir(root)
			return nil, fmt.Sprintf("cannot enable the memory controller in %s: %v", root, err)
		}
	}
	return m, ""
}

// removeStaleMemcgs removes the cgroups of benchmarks that died without removing theirs (their
// processes died with them: Pdeathsig).
func removeStaleMemcgs(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, memcgPrefix+"*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), memcgPrefix))
		if err == nil && syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = rmdirTree(d, time.Second)
		}
	}
}

// group makes (if need be) the cgroup at path (elements under root): a pod, or a container in a pod.
func (m *memcg) group(path ...string) (string, error) {
	dir := filepath.Join(append([]string{m.root}, path...)...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if m.v2 && len(path) == 1 { // a pod: its containers need the controller too
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory"), 0); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// remove removes the cgroup at path (elements under root) and everything under it, once its
// processes are gone.
func (m *memcg) remove(path ...string) error {
	return rmdirTree(filepath.Join(append([]string{m.root}, path...)...), 10*time.Second)
}

// close removes the benchmark's cgroup, leaving the machine as found.
func (m *memcg) close() error {
	if m == nil {
		return nil
	}
	return m.remove()
}

// rmdirTree removes a cgroup and its children, deepest first, retrying while a process that has
// been killed is still leaving it (EBUSY) until limit.
func rmdirTree(dir string, limit time.Duration) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name()), limit); err != nil {
				return err
			}
		}
	}
	deadline := time.Now().Add(limit)
	for {
		err := syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", dir, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cgexec is argv run inside the cgroup dir: the helper joins it and execs argv, so that nothing
// of argv's life is charged elsewhere (cgroup v1 has no CLONE_INTO_CGROUP). Without a cgroup,
// argv unchanged.
func (b *bench) cgexec(dir string, argv []string) []string {
	if dir == "" {
		return argv
	}
	return append([]string{b.helper, "cgexec", dir}, argv...)
}

// cgMem is one cgroup's memory figures, in bytes, hierarchical (the cgroup and everything under it).
type cgMem struct {
	usage        int64 // memory.usage_in_bytes (v1, kernel memory included) or memory.current
	inactiveFile int64
	activeFile   int64
	anon         int64 // anonymous pages: heap, stacks, the runtime's data
	file         int64 // page cache charged here
	kernel       int64 // kernel memory: page tables, slab, kernel stacks (v1: memory.kmem.usage_in_bytes)
}

// workingSet is usage less inactive file pages, never below 0: cAdvisor's working set, which the
// kubelet reports and evicts by.
func (c cgMem) workingSet() int64 { return max(c.usage-c.inactiveFile, 0) }

// read reads the cgroup at dir.
func (m *memcg) read(dir string) (cgMem, error) {
	var c cgMem
	usageFile, prefix := "memory.usage_in_bytes", "total_"
	if m.v2 {
		usageFile, prefix = "memory.current", ""
	}
	var err error
	if c.usage, err = readInt(filepath.Join(dir, usageFile)); err != nil {
		return c, err
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return c, err
	}
	fields := map[string]*int64{prefix + "inactive_file": &c.inactiveFile, prefix + "active_file": &c.activeFile}
	if m.v2 {
		fields["anon"], fields["file"], fields["kernel"] = &c.anon, &c.file, &c.kernel
	} else {
		fields["total_rss"], fields["total_cache"] = &c.anon, &c.file
		if c.kernel, err = readInt(filepath.Join(dir, "memory.kmem.usage_in_bytes")); err != nil {
			c.kernel = -1
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(stat))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if p := fields[k]; ok && p != nil {
			if *p, err = strconv.ParseInt(v, 10, 64); err != nil {
				return c, fmt.Errorf("%s/memory.stat %s: %w", dir, k, err)
			}
		}
	}
	return c, sc.Err()
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}
