package main

import (
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/koordinator-dev/koordinator/hack/internal/benchdoc"
)

// Every section template executes with the data its caller gives it: a mistake would otherwise
// show only at the end of a 40-minute benchmark.
func TestSectionTemplates(t *testing.T) {
	machine := benchdoc.Machine{Date: "2026-12-01", Cores: 2, CPU: "cpu", Kernel: "6.x", GoVersion: "go1.26", Load: "0 0 0"}
	for _, tc := range []struct {
		name, tmpl string
		data       map[string]any
	}{
		{"stop", sectionTemplate, map[string]any{"N": 1, "Settle": time.Second}},
		{"start", startSectionTemplate, map[string]any{"N": 1, "Quiet": time.Second, "CheckAfter": time.Second, "Steady": time.Second}},
		{"idle with cgroups", idleSectionTemplate, map[string]any{"ColdRuns": 1, "Wrappers": 2, "RSSAfter": time.Minute, "Idle": time.Minute,
			"Short": true, "Cgroups": true, "CgroupWhy": "", "CgroupVersion": "v1", "BinaryMiB": "14.5 MiB"}},
		{"idle without", idleSectionTemplate, map[string]any{"ColdRuns": 1, "Wrappers": 2, "RSSAfter": time.Minute, "Idle": time.Minute,
			"Short": false, "Cgroups": false, "CgroupWhy": "not root", "CgroupVersion": "v1", "BinaryMiB": "14.5 MiB"}},
		{"scale", scaleSectionTemplate, map[string]any{"Pods": 1, "Wrappers": 2, "Idle": time.Minute, "Runs": 1}},
	} {
		tc.data["Table"], tc.data["Machine"] = "TABLE\n", machine
		var out strings.Builder
		if err := template.Must(template.New(tc.name).Option("missingkey=error").Parse(tc.tmpl)).Execute(&out, tc.data); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if strings.Contains(out.String(), "<no value>") {
			t.Errorf("%s: a field without a value:\n%s", tc.name, out.String())
		}
	}
}
