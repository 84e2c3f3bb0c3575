package main

import (
	"io/fs"
	"testing"
)

func TestResolvePod(t *testing.T) {
	files := map[string]string{
		"/etc/podinfo/name":      "from-podinfo\n",
		"/etc/podinfo/namespace": "ns-podinfo\n",
		"/custom/name":           "from-custom",
		"/custom/namespace":      "ns-custom",
		namespaceFile:            "ns-serviceaccount",
	}
	cases := []struct {
		name    string
		env     map[string]string
		files   []string // which of files exist
		want    podIdentity
		wantErr bool
	}{
		{"explicit env wins", map[string]string{"KOORDINATOR_POD_NAME": "a", "KOORDINATOR_POD_NAMESPACE": "b", "POD_NAME": "x", "HOSTNAME": "h"},
			[]string{"/etc/podinfo/name", "/etc/podinfo/namespace"}, podIdentity{"b", "a"}, false},
		{"downward-API files", map[string]string{"POD_NAME": "x", "HOSTNAME": "h"},
			[]string{"/etc/podinfo/name", "/etc/podinfo/namespace", namespaceFile}, podIdentity{"ns-podinfo", "from-podinfo"}, false},
		{"podinfo folder moved", map[string]string{"KOORDINATOR_PODINFO_DIR": "/custom"},
			[]string{"/custom/name", "/custom/namespace", "/etc/podinfo/name"}, podIdentity{"ns-custom", "from-custom"}, false},
		{"POD_NAME and POD_NAMESPACE", map[string]string{"POD_NAME": "p", "POD_NAMESPACE": "pn", "HOSTNAME": "h"},
			[]string{namespaceFile}, podIdentity{"pn", "p"}, false},
		{"hostname and service-account namespace", map[string]string{"HOSTNAME": "h"},
			[]string{namespaceFile}, podIdentity{"ns-serviceaccount", "h"}, false},
		{"each part from its own source", map[string]string{"KOORDINATOR_POD_NAME": "a", "HOSTNAME": "h"},
			[]string{"/etc/podinfo/namespace"}, podIdentity{"ns-podinfo", "a"}, false},
		{"no name", map[string]string{}, []string{namespaceFile}, podIdentity{}, true},
		{"no namespace", map[string]string{"HOSTNAME": "h"}, nil, podIdentity{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exist := map[string]bool{}
			for _, f := range c.files {
				exist[f] = true
			}
			read := func(p string) ([]byte, error) {
				if !exist[p] {
					return nil, fs.ErrNotExist
				}
				return []byte(files[p]), nil
			}
			got, err := resolvePod(func(k string) string { return c.env[k] }, read)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}
