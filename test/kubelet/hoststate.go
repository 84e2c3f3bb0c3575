package kubelet

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// hostState is what the real node could change on the host if a namespace leaked: mounts, the
// kernel settings the kubelet and the CNI bridge plugin write, network devices, iptables tables,
// the host paths the kubelet, containerd, the shims and NRI write whatever their configuration
// says, and the kubepods cgroups (real-kubelet.md, "Host changes the kubelet makes").
type hostState struct {
	mounts   []string // mount point and filesystem type, from /proc/self/mountinfo
	settings map[string]string
	devices  []string
	tables   string
	paths    map[string]bool // path → exists
	cgroups  map[string]bool // kubepods cgroup folder → exists
}

var watchedSettings = []string{
	"/proc/sys/vm/overcommit_memory",
	"/proc/sys/kernel/panic",
	"/proc/sys/kernel/panic_on_oops",
	"/proc/sys/net/ipv4/ip_forward",
	"/proc/sys/kernel/keys/root_maxkeys",
	"/proc/sys/kernel/keys/root_maxbytes",
}

var watchedPaths = []string{
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/containers", "/var/log/pods",
	"/run/containerd", "/run/netns", "/var/run/nri", "/run/nri", "/etc/cni", "/opt/cni",
	"/etc/kubernetes", "/usr/libexec/kubernetes", "/etc/containerd",
}

// kubepodsCgroups are the cgroup folders the kubelet makes (cgroupfs driver) in every hierarchy.
func kubepodsCgroups() []string {
	var out []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods", "/sys/fs/cgroup/kubepods"} {
		m, _ := filepath.Glob(pattern)
		out = append(out, m...)
	}
	return out
}

func takeHostState() (*hostState, error) {
	s := &hostState{settings: map[string]string{}, paths: map[string]bool{}, cgroups: map[string]bool{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		s.mounts = append(s.mounts, fields[4]+" ("+fields[sep+1]+")")
	}
	f.Close()
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Strings(s.mounts)
	for _, p := range watchedSettings {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		s.settings[p] = strings.TrimSpace(string(b))
	}
	devs, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		s.devices = append(s.devices, d.Name())
	}
	if b, err := os.ReadFile("/proc/net/ip_tables_names"); err == nil {
		s.tables = strings.TrimSpace(string(b))
	}
	for _, p := range watchedPaths {
		_, err := os.Lstat(p)
		s.paths[p] = err == nil
	}
	for _, c := range kubepodsCgroups() {
		s.cgroups[c] = true
	}
	return s, nil
}

// diff lists every difference from s to after, one readable line each.
func (s *hostState) diff(after *hostState) []string {
	var out []string
	added, removed := setDiff(s.mounts, after.mounts)
	for _, m := range added {
		out = append(out, "new mount: "+m)
	}
	for _, m := range removed {
		out = append(out, "mount gone: "+m)
	}
	for _, p := range watchedSettings {
		if s.settings[p] != after.settings[p] {
			out = append(out, fmt.Sprintf("kernel setting %s: %q, was %q", p, after.settings[p], s.settings[p]))
		}
	}
	added, removed = setDiff(s.devices, after.devices)
	for _, d := range added {
		out = append(out, "new network device: "+d)
	}
	for _, d := range removed {
		out = append(out, "network device gone: "+d)
	}
	if s.tables != after.tables {
		out = append(out, fmt.Sprintf("iptables tables: %q, were %q", after.tables, s.tables))
	}
	for _, p := range watchedPaths {
		if s.paths[p] != after.paths[p] {
			out = append(out, fmt.Sprintf("%s: exists=%v, was %v", p, after.paths[p], s.paths[p]))
		}
	}
	for c := range after.cgroups {
		if !s.cgroups[c] {
			out = append(out, "cgroup left: "+c)
		}
	}
	sort.Strings(out)
	return out
}

func setDiff(before, after []string) (added, removed []string) {
	count := map[string]int{}
	for _, x := range before {
		count[x]++
	}
	for _, x := range after {
		count[x]--
	}
	for x, n := range count {
		for ; n < 0; n++ {
			added = append(added, x)
		}
		for ; n > 0; n-- {
			removed = append(removed, x)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return added, removed
}

// removeKubepodsCgroups removes, deepest first, every kubepods cgroup folder that did not exist
// before: once the node's namespace is gone they hold no process. It returns how many it removed.
func removeKubepodsCgroups(before *hostState) (int, error) {
	n := 0
	for _, top := range kubepodsCgroups() {
		if before.cgroups[top] {
			continue
		}
		var dirs []string
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("listing %s: %w", top, err)
		}
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				return n, fmt.Errorf("removing the kubelet's cgroup %s: %w", dirs[i], err)
			}
			n++
		}
	}
	return n, nil
}
