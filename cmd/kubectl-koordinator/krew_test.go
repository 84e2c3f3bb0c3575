package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKrewManifest: plugins/koordinator.yaml, with krew-release-bot's template filled in as it
// would be, is a krew Plugin whose platforms are exactly make build-plugin-all's.
func TestKrewManifest(t *testing.T) {
	tmpl := mustRead(t, "../../plugins/koordinator.yaml")
	filled := regexp.MustCompile(`\{\{addURIAndSha "([^"]+)" \.TagName \}\}`).ReplaceAllStringFunc(tmpl, func(m string) string {
		uri := regexp.MustCompile(`"([^"]+)"`).FindStringSubmatch(m)[1]
		return fmt.Sprintf("uri: %s\n      sha256: %s", uri, strings.Repeat("ab", 32))
	})
	filled = strings.ReplaceAll(filled, "{{ .TagName }}", "v1.2.3")
	if strings.Contains(filled, "{{") {
		t.Fatalf("template left unfilled:\n%s", filled)
	}
	var plugin struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version   string `json:"version"`
			Platforms []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				Sha256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	// Not strict: the fields of krew's Plugin this test does not check may be there.
	if err := yaml.Unmarshal([]byte(filled), &plugin); err != nil {
		t.Fatal(err)
	}
	if plugin.Kind != "Plugin" || plugin.Metadata.Name != "koordinator" || plugin.Spec.Version != "v1.2.3" {
		t.Errorf("%+v", plugin)
	}
	var got []string
	for _, p := range plugin.Spec.Platforms {
		os, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		got = append(got, os+"/"+arch)
		bin := "kubectl-koordinator"
		if os == "windows" {
			bin += ".exe"
		}
		if p.Bin != bin || len(p.Sha256) != 64 || !strings.HasSuffix(p.URI, "/v1.2.3/kubectl-koordinator-"+os+"-"+arch+".tar.gz") {
			t.Errorf("%s/%s: bin %q, uri %q", os, arch, p.Bin, p.URI)
		}
	}
	m := regexp.MustCompile(`(?m)^PLUGIN_PLATFORMS := (.*)$`).FindStringSubmatch(mustRead(t, "../../Makefile"))
	if m == nil {
		t.Fatal("Makefile: no PLUGIN_PLATFORMS")
	}
	want := strings.Fields(m[1])
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("krew platforms %v, make build-plugin-all's %v", got, want)
	}
}
