package main

import (
	"errors"
	"path/filepath"
	"strings"
)

// podIdentity is the pod koordinator runs in.
type podIdentity struct{ Namespace, Name string }

const (
	defaultPodinfoDir = "/etc/podinfo"
	namespaceFile     = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// resolvePod finds this pod's name and namespace, each from the first source that has it:
// KOORDINATOR_POD_NAME/_NAMESPACE; the downward-API files name and namespace in
// KOORDINATOR_PODINFO_DIR (default /etc/podinfo); POD_NAME/POD_NAMESPACE; finally HOSTNAME and
// the service-account namespace file.
func resolvePod(getenv func(string) string, readFile func(string) ([]byte, error)) (podIdentity, error) {
	dir := getenv("KOORDINATOR_PODINFO_DIR")
	if dir == "" {
		dir = defaultPodinfoDir
	}
	file := func(path string) string {
		b, err := readFile(path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	first := func(sources ...func() string) string {
		for _, s := range sources {
			if v := strings.TrimSpace(s()); v != "" {
				return v
			}
		}
		return ""
	}
	env := func(k string) func() string { return func() string { return getenv(k) } }
	id := podIdentity{
		Name: first(env("KOORDINATOR_POD_NAME"), func() string { return file(filepath.Join(dir, "name")) },
			env("POD_NAME"), env("HOSTNAME")),
		Namespace: first(env("KOORDINATOR_POD_NAMESPACE"), func() string { return file(filepath.Join(dir, "namespace")) },
			env("POD_NAMESPACE"), func() string { return file(namespaceFile) }),
	}
	switch {
	case id.Name == "":
		return id, errors.New("cannot tell this pod's name: set KOORDINATOR_POD_NAME from the downward API (fieldRef: metadata.name)")
	case id.Namespace == "":
		return id, errors.New("cannot tell this pod's namespace: set KOORDINATOR_POD_NAMESPACE from the downward API (fieldRef: metadata.namespace)")
	}
	return id, nil
}
