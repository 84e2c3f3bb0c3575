// Package ociimage writes and reads koordinator's container image as one tarball, without a
// container engine: the image the repository's Dockerfile builds — FROM scratch, one layer holding
// only the static binary at /bin/koordinator (mode 0755, owned by 0:0), USER 65532:65532,
// ENTRYPOINT ["/bin/koordinator", "--install"], no CMD — for linux/amd64 and linux/arm64 under one
// OCI image index:
//
//	oci-layout, index.json, blobs/sha256/...   an OCI image layout (the multi-arch index), read by
//	                                           containerd (`ctr images import`, `kind load
//	                                           image-archive`) and Docker's containerd image store
//	manifest.json                              the docker-archive entry for one platform
//	                                           (linux/amd64 unless DockerArch says otherwise), for
//	                                           `docker load` on Docker's classic image store, which
//	                                           reads only manifest.json
//
// This is the shape `docker save` has written since Docker 25. The output is reproducible: every
// timestamp is Options.Epoch, so equal binaries give a byte-identical tarball. hack/image writes
// it (make image); hack/push and hack/release read it back.
package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the Dockerfile's final stage says, and what BuildKit adds to every image built FROM scratch
// (WorkingDir "/" and the default PATH).
const (
	binaryPath  = "bin/koordinator" // in the layer: /bin/koordinator
	binaryMode  = 0o755             // COPY --chmod=0755; owner 0:0 like COPY without --chown
	imageUser   = "65532:65532"
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

	// Annotations on index.json's entry, as `docker save` and containerd's exporter write them:
	// containerd names the imported image after annotationImageName (the full reference);
	// the OCI annotation holds only the tag.
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

var entrypoint = []string{"/" + binaryPath, "--install"}

// Platform is one architecture of the image and the binary that goes into it.
type Platform struct {
	Arch   string // GOARCH: amd64, arm64
	Binary []byte
}

// Options describe one image tarball.
type Options struct {
	Platforms  []Platform // in index order
	Tags       []string   // e.g. koordinator:v1.2.3, ghcr.io/koordinator-dev/koordinator:latest
	Epoch      time.Time  // every timestamp in the image and the tarball
	DockerArch string     // the platform manifest.json refers to; "" means the first
}

// Result describes what Write wrote.
type Result struct {
	Index       v1.Hash
	Images      []ImageInfo
	FileSize    int64
	DockerImage string // the platform manifest.json refers to
}

// ImageInfo describes one platform's image.
type ImageInfo struct {
	Platform   string
	Manifest   v1.Hash
	BinarySize int64
	LayerSize  int64 // gzip-compressed, as stored and pushed
}

// Build assembles the multi-arch image index (no tags yet) and the per-platform images.
func Build(opts Options) (v1.ImageIndex, []v1.Image, error) {
	if len(opts.Platforms) == 0 {
		return nil, nil, errors.New("no platforms")
	}
	created := v1.Time{Time: opts.Epoch.UTC()}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var images []v1.Image
	for _, p := range opts.Platforms {
		layerTar, err := binaryLayerTar(p.Binary, opts.Epoch)
		if err != nil {
			return nil, nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
		if err != nil {
			return nil, nil, err
		}

		base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err := mutate.ConfigFile(base, &v1.ConfigFile{
			Architecture: p.Arch,
			OS:           "linux",
			Created:      created,
			Config: v1.Config{
				User:       imageUser,
				Entrypoint: entrypoint,
				Env:        []string{defaultPath},
				WorkingDir: "/",
			},
			RootFS: v1.RootFS{Type: "layers"},
		})
		if err != nil {
			return nil, nil, err
		}
		img, err = mutate.Append(img,
			mutate.Addendum{Layer: layer, History: v1.History{
				Created: created, CreatedBy: "COPY --chmod=0755 koordinator /bin/koordinator", Comment: "hack/image"}},
			mutate.Addendum{History: v1.History{
				Created: created, CreatedBy: "USER " + imageUser, Comment: "hack/image", EmptyLayer: true}},
			mutate.Addendum{History: v1.History{
				Created: created, CreatedBy: `ENTRYPOINT ["/bin/koordinator" "--install"]`, Comment: "hack/image", EmptyLayer: true}},
		)
		if err != nil {
			return nil, nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        plainImage{img},
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: p.Arch}},
		})
		images = append(images, img)
	}
	return idx, images, nil
}

// plainImage gives the index an image descriptor of media type, digest and size (plus the platform
// the addendum sets), as BuildKit writes it. Left alone, go-containerregistry v0.22 also sets
// artifactType to the config's media type, a field the OCI spec meant for artifacts.
type plainImage struct{ v1.Image }

func (p plainImage) Descriptor() (*v1.Descriptor, error) {
	mt, err := p.MediaType()
	if err != nil {
		return nil, err
	}
	digest, err := p.Digest()
	if err != nil {
		return nil, err
	}
	size, err := p.Size()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Digest: digest, Size: size}, nil
}

// binaryLayerTar is the layer: one regular file, bin/koordinator, 0755, 0:0, mtime epoch.
// (go-containerregistry's crane.Layer cannot set a file mode, so the one header is written here.)
func binaryLayerTar(bin []byte, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     binaryPath,
		Mode:     binaryMode,
		Size:     int64(len(bin)),
		ModTime:  epoch,
		Format:   tar.FormatUSTAR,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write builds the image and writes the tarball to out (atomically: a temporary file is renamed).
func Write(out string, opts Options) (*Result, error) {
	if len(opts.Tags) == 0 {
		return nil, errors.New("no tags")
	}
	idx, images, err := Build(opts)
	if err != nil {
		return nil, err
	}

	// index.json gets one entry per tag, each pointing at the multi-arch index: containerd creates
	// one image per entry, named by its io.containerd.image.name annotation.
	top := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var repoTags []string
	for _, t := range opts.Tags {
		tag, err := name.NewTag(t)
		if err != nil {
			return nil, fmt.Errorf("tag %q: %w", t, err)
		}
		full, familiar := tagNames(tag)
		repoTags = append(repoTags, familiar)
		top = mutate.AppendManifests(top, mutate.IndexAddendum{
			Add: idx,
			Descriptor: v1.Descriptor{Annotations: map[string]string{
				annotationImageName: full,
				annotationRefName:   tag.TagStr(),
			}},
		})
	}

	dir, err := os.MkdirTemp("", "koordinator-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := layout.Write(dir, top); err != nil {
		return nil, err
	}

	// manifest.json for Docker's classic image store: one platform's config and layer, referring
	// to the same blobs as the OCI layout. That store holds one platform per tag.
	docker := -1
	for i, p := range opts.Platforms {
		if opts.DockerArch == "" || p.Arch == opts.DockerArch {
			docker = i
			break
		}
	}
	if docker < 0 {
		return nil, fmt.Errorf("docker platform %s is not among the image's platforms", opts.DockerArch)
	}
	cfgName, err := images[docker].ConfigName()
	if err != nil {
		return nil, err
	}
	layers, err := images[docker].Layers()
	if err != nil {
		return nil, err
	}
	dm := tarball.Descriptor{Config: blobPath(cfgName), RepoTags: repoTags}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		dm.Layers = append(dm.Layers, blobPath(d))
	}
	mj, err := json.Marshal(tarball.Manifest{dm})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), mj, 0o644); err != nil {
		return nil, err
	}

	tmp := out + ".tmp"
	if err := tarDir(tmp, dir, opts.Epoch); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}

	res := &Result{DockerImage: "linux/" + opts.Platforms[docker].Arch}
	if res.Index, err = idx.Digest(); err != nil {
		return nil, err
	}
	for i, img := range images {
		info := ImageInfo{Platform: "linux/" + opts.Platforms[i].Arch, BinarySize: int64(len(opts.Platforms[i].Binary))}
		if info.Manifest, err = img.Digest(); err != nil {
			return nil, err
		}
		ls, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			sz, err := l.Size()
			if err != nil {
				return nil, err
			}
			info.LayerSize += sz
		}
		res.Images = append(res.Images, info)
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	res.FileSize = st.Size()
	return res, nil
}

// tagNames gives the full name containerd uses (docker.io/library/koordinator:v1) and the
// familiar one Docker writes in manifest.json (koordinator:v1).
func tagNames(t name.Tag) (full, familiar string) {
	reg, repo := t.RegistryStr(), t.RepositoryStr()
	if reg != name.DefaultRegistry {
		s := reg + "/" + repo + ":" + t.TagStr()
		return s, s
	}
	full = "docker.io/" + repo + ":" + t.TagStr()
	familiar = strings.TrimPrefix(repo, "library/") + ":" + t.TagStr()
	return full, familiar
}

func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

// tarDir writes dir's tree to a tar file with entries in lexical order, owner 0:0, modes 0755
// (directories) and 0644 (files), and every mtime at epoch, so the result depends only on content.
func tarDir(out, dir string, epoch time.Time) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch, Format: tar.FormatUSTAR}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(tw, src)
			return err
		default:
			return fmt.Errorf("%s: unexpected file type %s", rel, d.Type())
		}
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// Open reads a tarball Write wrote (or any tar of an OCI image layout whose index.json entries all
// name one image index): it unpacks it into a temporary folder, which cleanup removes, and returns
// that index, the multi-arch image.
func Open(tarPath string) (idx v1.ImageIndex, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "koordinator-image-")
	if err != nil {
		return nil, nil, err
	}
	remove := func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			remove()
		}
	}()
	if err := untar(tarPath, dir); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", tarPath, err)
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not an OCI image layout: %w", tarPath, err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, nil, err
	}
	var digest v1.Hash
	for i, d := range im.Manifests {
		if d.MediaType != types.OCIImageIndex && d.MediaType != types.DockerManifestList {
			return nil, nil, fmt.Errorf("%s: index.json entry %d is a %s, not a multi-arch image index", tarPath, i, d.MediaType)
		}
		if i > 0 && d.Digest != digest {
			return nil, nil, fmt.Errorf("%s: index.json names more than one image (%s, %s)", tarPath, digest, d.Digest)
		}
		digest = d.Digest
	}
	if len(im.Manifests) == 0 {
		return nil, nil, fmt.Errorf("%s: index.json names no image", tarPath)
	}
	idx, err = top.ImageIndex(digest)
	if err != nil {
		return nil, nil, err
	}
	return idx, remove, nil
}

// untar unpacks the regular files and folders of a tar into dir, refusing any other entry and any
// name that would leave dir.
func untar(tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel := path.Clean(h.Name)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("entry %q leaves the layout", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: type %c, want only files and folders", h.Name, h.Typeflag)
		}
	}
}
