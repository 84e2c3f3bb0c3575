package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// BenchmarkInject1000Documents: one inject over a stream of 1,000 documents, half of them the
// plain Job of testdata (wired), half ConfigMaps (passed through). make bench's figure.
func BenchmarkInject1000Documents(b *testing.B) {
	job, err := readFile("testdata/inject/job.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var stream strings.Builder
	for i := 0; i < 500; i++ {
		if i > 0 {
			stream.WriteString("---\n")
		}
		stream.WriteString(job)
		stream.WriteString("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  key: value\n")
	}
	in := stream.String()
	b.SetBytes(int64(len(in)))
	b.ResetTimer()
	for b.Loop() {
		var out bytes.Buffer
		code := run([]string{"inject", "-f", "-", "--sidecar", "proxy", "--stop-delay", "1s"},
			genericiooptions.IOStreams{In: strings.NewReader(in), Out: &out, ErrOut: io.Discard})
		if code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
