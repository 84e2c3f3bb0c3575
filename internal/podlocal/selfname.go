package podlocal

import (
	"bytes"
	"os"
	"strings"

	"github.com/koordinator-dev/koordinator/internal/spec"
)

const (
	// MountInfoPath is where the kernel lists this process's mounts.
	MountInfoPath = "/proc/self/mountinfo"
	// TerminationLogPath is a container's default terminationMessagePath.
	TerminationLogPath = "/dev/termination-log"
)

// NameFromMountInfo finds this container's name in the content of /proc/self/mountinfo: the
// kubelet creates each container instance's termination-message file at
// <pod dir>/containers/<container name>/<random id> and bind-mounts it at the container's
// terminationMessagePath (kuberuntime_container.go; getPodContainerDir in kubelet_getters.go),
// so the root field of the mount at mountPoint ends in /containers/<name>/<id>. The last mount
// at mountPoint wins (it is the one visible). ok is false when there is no such mount or its root
// does not have that shape.
func NameFromMountInfo(mountinfo []byte, mountPoint string) (name string, ok bool) {
	var root string
	for line := range bytes.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		f := strings.Fields(string(line))
		if len(f) < 5 || unescapeOctal(f[4]) != mountPoint {
			continue
		}
		root = unescapeOctal(f[3])
	}
	parts := strings.Split(root, "/")
	if len(parts) < 4 {
		return "", false
	}
	n := len(parts)
	if parts[n-3] != "containers" || parts[n-1] == "" || !spec.IsContainerName(parts[n-2]) {
		return "", false
	}
	return parts[n-2], true
}

// NameFromMountInfoFile reads the mountinfo file at path (MountInfoPath) and applies
// NameFromMountInfo with mountPoint.
func NameFromMountInfoFile(path, mountPoint string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	return NameFromMountInfo(b, mountPoint)
}

// unescapeOctal undoes the kernel's escaping of space, tab, newline and backslash in mountinfo
// paths (\040, \011, \012, \134).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] <= '3' && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
