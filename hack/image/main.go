// Command image builds koordinator's container image without a container engine.
//
// It produces the same image as the repository's Dockerfile — FROM scratch, one layer holding only
// the static binary at /bin/koordinator (mode 0755, owned by 0:0), USER 65532:65532,
// ENTRYPOINT ["/bin/koordinator", "--install"], no CMD — for linux/amd64 and linux/arm64 under one
// OCI image index, and writes it as a single tarball:
//
//	oci-layout, index.json, blobs/sha256/...   an OCI image layout (the multi-arch index), read by
//	                                           containerd (`ctr images import`, `kind load
//	                                           image-archive`) and Docker's containerd image store
//	manifest.json                              the docker-archive entry for one platform
//	                                           (linux/amd64 unless -docker-arch says otherwise), for
//	                                           `docker load` on Docker's classic image store, which
//	                                           reads only manifest.json
//
// This is the shape `docker save` has written since Docker 25. The output is reproducible: every
// timestamp is SOURCE_DATE_EPOCH (or the Unix epoch when unset), so equal binaries give a
// byte-identical tarball.
//
// Usage (see `make image`):
//
//	go run . -amd64 bin/koordinator-linux-amd64 -arm64 bin/koordinator-linux-arm64 \
//	    -tag koordinator:dev -o bin/koordinator-image.tar
package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
)

// checkBinary refuses what would not run in a scratch image on arch: a non-ELF file, another
// architecture (e.g. the -amd64 and -arm64 paths swapped) or a dynamically linked binary.
func checkBinary(file, arch string) error {
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	ef, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	defer ef.Close()
	if ef.Machine != want {
		return fmt.Errorf("%s: built for %s, not %s", file, ef.Machine, arch)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked; a scratch image needs a static binary (CGO_ENABLED=0)", file)
		}
	}
	return nil
}

// epochFromEnv is SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/),
// or the Unix epoch when it is unset.
func epochFromEnv() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var (
		amd64, arm64, out, dockerArch string
		tags                          stringList
	)
	flag.StringVar(&amd64, "amd64", "", "static linux/amd64 binary")
	flag.StringVar(&arm64, "arm64", "", "static linux/arm64 binary")
	flag.Var(&tags, "tag", "image reference to name it by, e.g. koordinator:v1 (repeatable; default koordinator:dev)")
	flag.StringVar(&out, "o", "koordinator-image.tar", "output tarball")
	flag.StringVar(&dockerArch, "docker-arch", "", "architecture manifest.json refers to, the one docker load reads on Docker's classic image store (default amd64 when given, else arm64)")
	flag.Parse()
	if err := run(amd64, arm64, out, dockerArch, tags); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(amd64, arm64, out, dockerArch string, tags []string) error {
	if len(tags) == 0 {
		tags = []string{"koordinator:dev"}
	}
	epoch, err := epochFromEnv()
	if err != nil {
		return err
	}
	opts := ociimage.Options{Tags: tags, Epoch: epoch, DockerArch: dockerArch}
	for _, p := range []struct{ arch, file string }{{"amd64", amd64}, {"arm64", arm64}} {
		if p.file == "" {
			continue
		}
		if err := checkBinary(p.file, p.arch); err != nil {
			return err
		}
		b, err := os.ReadFile(p.file)
		if err != nil {
			return err
		}
		opts.Platforms = append(opts.Platforms, ociimage.Platform{Arch: p.arch, Binary: b})
	}
	if len(opts.Platforms) == 0 {
		return errors.New("give at least one of -amd64, -arm64")
	}
	res, err := ociimage.Write(out, opts)
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(out); err == nil {
		out = abs
	}
	fmt.Printf("%s: %s (OCI image layout, multi-arch; manifest.json: %s), tags %s\n",
		out, mib(res.FileSize), res.DockerImage, strings.Join(tags, ", "))
	fmt.Printf("  index %s, created %s\n", res.Index, epoch.Format(time.RFC3339))
	for _, im := range res.Images {
		fmt.Printf("  %-12s binary %s, layer %s (gzip), manifest %s\n",
			im.Platform, mib(im.BinarySize), mib(im.LayerSize), im.Manifest)
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB (%d bytes)", float64(n)/(1<<20), n) }
