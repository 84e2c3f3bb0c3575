// Package imageconfig reads what an image runs — its ENTRYPOINT and CMD — from its registry,
// with github.com/google/go-containerregistry and the credentials the user already has (the
// docker config and its credential helpers, as crane uses them), so that inject can write the
// command of a container whose manifest gives none.
//
// It never guesses: an image index whose platforms run different commands is an error naming
// them, as is an index with no runnable image.
package imageconfig

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/koordinator-dev/koordinator/internal/inject"
)

// Registry looks image configs up. The zero value uses authn.DefaultKeychain.
type Registry struct {
	Keychain authn.Keychain  // nil: authn.DefaultKeychain (~/.docker/config.json, DOCKER_CONFIG, credential helpers)
	Options  []remote.Option // more options for every request (a transport, in tests)
	// Platform, when set, picks that platform's image of an index instead of requiring every
	// platform to run the same command.
	Platform *v1.Platform

	mu    sync.Mutex
	cache map[string]inject.ImageConfig
}

// Lookup returns the ENTRYPOINT and CMD of the image. Results are cached by reference.
func (r *Registry) Lookup(ctx context.Context, image string) (inject.ImageConfig, error) {
	r.mu.Lock()
	if cfg, ok := r.cache[image]; ok {
		r.mu.Unlock()
		return cfg, nil
	}
	r.mu.Unlock()

	ref, err := name.ParseReference(image)
	if err != nil {
		return inject.ImageConfig{}, fmt.Errorf("image %q: %w", image, err)
	}
	keychain := r.Keychain
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain)}, r.Options...)
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return inject.ImageConfig{}, fmt.Errorf("reading image %s: %w", image, err)
	}
	var cfg inject.ImageConfig
	if desc.MediaType.IsIndex() && r.Platform != nil {
		img, err := remote.Image(ref, append(opts, remote.WithPlatform(*r.Platform))...)
		if err != nil {
			return inject.ImageConfig{}, fmt.Errorf("reading image %s for %s: %w", image, r.Platform, err)
		}
		if cfg, err = fromImage(image+" ("+r.Platform.String()+")", img); err != nil {
			return inject.ImageConfig{}, err
		}
	} else if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return inject.ImageConfig{}, fmt.Errorf("reading image index %s: %w", image, err)
		}
		cfg, err = fromIndex(image, idx)
		if err != nil {
			return inject.ImageConfig{}, err
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return inject.ImageConfig{}, fmt.Errorf("reading image %s: %w", image, err)
		}
		if cfg, err = fromImage(image, img); err != nil {
			return inject.ImageConfig{}, err
		}
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache = map[string]inject.ImageConfig{}
	}
	r.cache[image] = cfg
	r.mu.Unlock()
	return cfg, nil
}

func fromImage(image string, img v1.Image) (inject.ImageConfig, error) {
	f, err := img.ConfigFile()
	if err != nil {
		return inject.ImageConfig{}, fmt.Errorf("reading the config of image %s: %w", image, err)
	}
	return inject.ImageConfig{Entrypoint: f.Config.Entrypoint, Cmd: f.Config.Cmd}, nil
}

// fromIndex reads every runnable platform of the index: they must all run the same command.
func fromIndex(image string, idx v1.ImageIndex) (inject.ImageConfig, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return inject.ImageConfig{}, fmt.Errorf("reading image index %s: %w", image, err)
	}
	type platformConfig struct {
		platform string
		cfg      inject.ImageConfig
	}
	var found []platformConfig
	for _, d := range m.Manifests {
		// Attestations and signatures ride in indexes as "unknown/unknown" manifests.
		if !d.MediaType.IsImage() || d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return inject.ImageConfig{}, fmt.Errorf("reading image %s for %s: %w", image, d.Platform, err)
		}
		cfg, err := fromImage(image+" ("+d.Platform.String()+")", img)
		if err != nil {
			return inject.ImageConfig{}, err
		}
		found = append(found, platformConfig{d.Platform.String(), cfg})
	}
	if len(found) == 0 {
		return inject.ImageConfig{}, fmt.Errorf("image index %s holds no image for any platform", image)
	}
	same := func(a, b inject.ImageConfig) bool {
		return slices.Equal(a.Entrypoint, b.Entrypoint) && slices.Equal(a.Cmd, b.Cmd)
	}
	for _, f := range found[1:] {
		if !same(f.cfg, found[0].cfg) {
			var each []string
			for _, f := range found {
				each = append(each, fmt.Sprintf("%s runs ENTRYPOINT %q CMD %q", f.platform, f.cfg.Entrypoint, f.cfg.Cmd))
			}
			return inject.ImageConfig{}, fmt.Errorf("the platforms of image %s run different commands (%s): pick one with --platform, set command in the manifest, or give --entrypoint and --cmd",
				image, strings.Join(each, "; "))
		}
	}
	return found[0].cfg, nil
}
