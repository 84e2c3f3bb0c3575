// Command release finishes dist/ after `make release` has built the binaries and the image
// tarball into it: it checks that the tarball's images hold exactly dist's linux binaries, writes
// the manifests of deploy/ to dist/deploy/ with koordinator's image pinned by the index digest
// (ghcr.io/koordinator-dev/koordinator:latest becomes ghcr.io/koordinator-dev/koordinator@sha256:...),
// packs each kubectl plugin binary into the archive plugins/koordinator.yaml (the krew manifest)
// names, kubectl-koordinator-OS-ARCH.tar.gz holding the binary as kubectl-koordinator[.exe], and
// writes dist/SHA256SUMS over every file, in `sha256sum -c` form.
//
// Everything it writes depends only on its inputs (sorted, no timestamps), so two releases of the
// same tree are byte-identical.
//
// Usage (see `make release`):
//
//	go run ./hack/release -dist dist -deploy deploy
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
)

const (
	// ImageName is the image every manifest in deploy/ names, with DefaultTag.
	ImageName  = "ghcr.io/koordinator-dev/koordinator"
	DefaultTag = "latest"

	ImageTarball = "koordinator-image.tar"
	Checksums    = "SHA256SUMS"
	DeployDir    = "deploy"
)

func main() {
	dist := flag.String("dist", "dist", "the release folder, holding the binaries and "+ImageTarball)
	deploy := flag.String("deploy", "deploy", "the manifests to pin")
	flag.Parse()
	res, err := Finish(*dist, *deploy)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: image %s@%s\n", *dist, ImageName, res.Index)
	for _, f := range res.Files {
		fmt.Printf("  %-45s %10d bytes  %s\n", f.Name, f.Size, f.SHA256)
	}
}

// File is one file of the release.
type File struct {
	Name   string // slash-separated, relative to dist
	Size   int64
	SHA256 string
}

// Result is what Finish wrote and found.
type Result struct {
	Index v1.Hash
	Files []File // every file, SHA256SUMS last
}

// Finish checks dist's image against its binaries, writes dist/deploy/ and dist/SHA256SUMS.
func Finish(dist, deploy string) (*Result, error) {
	idx, cleanup, err := ociimage.Open(filepath.Join(dist, ImageTarball))
	if err != nil {
		return nil, err
	}
	defer cleanup()
	digest, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	if err := checkImageBinaries(idx, dist); err != nil {
		return nil, err
	}
	if err := pinManifests(deploy, filepath.Join(dist, DeployDir), ImageName+"@"+digest.String()); err != nil {
		return nil, err
	}
	if err := packPlugins(dist); err != nil {
		return nil, err
	}
	files, err := writeChecksums(dist)
	if err != nil {
		return nil, err
	}
	return &Result{Index: digest, Files: files}, nil
}

// checkImageBinaries: each platform's image holds, at bin/koordinator, the bytes of
// dist/koordinator-linux-ARCH, so the pinned image runs the released binaries.
func checkImageBinaries(idx v1.ImageIndex, dist string) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	if len(im.Manifests) == 0 {
		return errors.New("the image index lists no platform")
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			return fmt.Errorf("image %s: platform %v, want linux", d.Digest, d.Platform)
		}
		bin := filepath.Join(dist, "koordinator-linux-"+d.Platform.Architecture)
		want, err := os.ReadFile(bin)
		if err != nil {
			return fmt.Errorf("the image has %s, but: %w", d.Platform, err)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		got, err := layerFile(img, "bin/koordinator")
		if err != nil {
			return fmt.Errorf("%s image: %w", d.Platform, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("the %s image's /bin/koordinator is not %s: rebuild the image from dist's binaries", d.Platform, bin)
		}
	}
	return nil
}

// layerFile reads one file from an image's layers (the last layer that has it).
func layerFile(img v1.Image, name string) ([]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var found []byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return nil, err
			}
			if strings.TrimPrefix(h.Name, "./") == name {
				if found, err = io.ReadAll(tr); err != nil {
					rc.Close()
					return nil, err
				}
			}
		}
		rc.Close()
	}
	if found == nil {
		return nil, fmt.Errorf("no %s in its layers", name)
	}
	return found, nil
}

// pinManifests copies every *.yaml of src to dst with ImageName:DefaultTag replaced by pinned.
// A manifest naming the image with another tag is an error: it would be released unpinned.
func pinManifests(src, dst, pinned string) error {
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no manifests in %s", src)
	}
	if err := os.RemoveAll(dst); err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s := strings.ReplaceAll(string(b), ImageName+":"+DefaultTag, pinned)
		if i := strings.Index(s, ImageName+":"); i >= 0 {
			end := strings.IndexAny(s[i:], " \t\n\"'")
			if end < 0 {
				end = len(s) - i
			}
			return fmt.Errorf("%s names %s, not %s:%s: it cannot be pinned", f, s[i:i+end], ImageName, DefaultTag)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pluginPrefix begins the name of every kubectl plugin binary in dist.
const pluginPrefix = "kubectl-koordinator-"

// packPlugins writes, for each dist/kubectl-koordinator-OS-ARCH[.exe], the krew archive
// dist/kubectl-koordinator-OS-ARCH.tar.gz: one file, kubectl-koordinator[.exe], mode 0755, with
// no time, owner or name that could differ between two releases (krew reads the tar and gzip
// formats; a release is reproducible only if these bytes are).
func packPlugins(dist string) error {
	entries, err := os.ReadDir(dist)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, pluginPrefix) || strings.HasSuffix(name, ".tar.gz") || !e.Type().IsRegular() {
			continue
		}
		platform, exe := strings.CutSuffix(strings.TrimPrefix(name, pluginPrefix), ".exe")
		bin := "kubectl-koordinator"
		if exe {
			bin += ".exe"
		}
		b, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			return err
		}
		archive, err := krewArchive(bin, b)
		if err != nil {
			return fmt.Errorf("packing %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dist, pluginPrefix+platform+".tar.gz"), archive, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// krewArchive is a gzipped tar holding content as the executable name.
func krewArchive(name string, content []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeChecksums writes dist/SHA256SUMS over every other regular file under dist, sorted by path,
// in the form sha256sum -c reads: "HEX  PATH".
func writeChecksums(dist string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dist, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dist, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir() || rel == Checksums:
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file", p)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		files = append(files, File{Name: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	var sums strings.Builder
	for _, f := range files {
		fmt.Fprintf(&sums, "%s  %s\n", f.SHA256, f.Name)
	}
	p := filepath.Join(dist, Checksums)
	if err := os.WriteFile(p, []byte(sums.String()), 0o644); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(sums.String()))
	files = append(files, File{Name: Checksums, Size: int64(sums.Len()), SHA256: hex.EncodeToString(sum[:])})
	return files, nil
}
