// Command push pushes koordinator's multi-arch image from the tarball `make image` writes to a
// registry, with the credentials the user already has: the docker config (~/.docker/config.json
// or $DOCKER_CONFIG, as `docker login` writes it) and its credential helpers, as crane does. It
// prints the pushed index's digest and the reference that pins it.
//
// Usage (see `make push`):
//
//	go run ./hack/push -i bin/koordinator-image.tar registry.example.com/team/koordinator:v0.1.0
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
)

func main() {
	in := flag.String("i", "bin/koordinator-image.tar", "the image tarball (make image)")
	insecure := flag.Bool("insecure", false, "allow a registry over plain HTTP (localhost and 127.0.0.1 always may)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: push [-i TARBALL] [-insecure] REGISTRY/REPOSITORY:TAG\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := push(ctx, os.Stdout, *in, flag.Arg(0), *insecure, authn.DefaultKeychain); err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		os.Exit(1)
	}
}

// push pushes the image index of the tarball at in to the tag ref and returns its digest.
func push(ctx context.Context, w io.Writer, in, ref string, insecure bool, keychain authn.Keychain) (v1.Hash, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	tag, err := name.NewTag(ref, append(opts, name.StrictValidation)...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("%q: want REGISTRY/REPOSITORY:TAG, e.g. registry.example.com/team/koordinator:v0.1.0: %w", ref, err)
	}
	idx, cleanup, err := ociimage.Open(in)
	if err != nil {
		return v1.Hash{}, err
	}
	defer cleanup()
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform != nil {
			platforms = append(platforms, d.Platform.String())
		}
	}

	begin := time.Now()
	if err := remote.WriteIndex(tag, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain)); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", tag, err)
	}
	fmt.Fprintf(w, "pushed %s (%s) in %s\n", tag, strings.Join(platforms, ", "), time.Since(begin).Round(time.Millisecond))
	fmt.Fprintf(w, "digest: %s\n", digest)
	fmt.Fprintf(w, "%s\n", tag.Context().Digest(digest.String()))
	return digest, nil
}
