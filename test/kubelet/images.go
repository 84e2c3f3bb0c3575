package kubelet

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/koordinator-dev/koordinator/internal/ociimage"
)

// registryAddr is the node's image registry: go-containerregistry's in-process registry, on the
// namespace's loopback. containerd takes every registry the tests name (mirroredRegistries)
// from it (hostsFiles), so images are really pulled, with the manifests'
// pull policies as written, and nothing leaves the machine.
const registryAddr = "127.0.0.1:5000"

// mirroredRegistries are the registries containerd is told to fetch from registryAddr: the ones
// the manifests, the README and the scenarios name.
var mirroredRegistries = []string{"docker.io", "ghcr.io", "registry.k8s.io", "registry.example.com"}

// serveRegistry starts the registry; it stops when the returned server is closed.
func serveRegistry() (*http.Server, error) {
	ln, err := net.Listen("tcp", registryAddr)
	if err != nil {
		return nil, fmt.Errorf("image registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(discardLogger())), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// hostsFiles are containerd's per-registry hosts.toml files (config_path): each mirrored
// registry is served by registryAddr over plain HTTP.
func hostsFiles(dir string) error {
	for _, r := range mirroredRegistries {
		d := filepath.Join(dir, r)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		body := fmt.Sprintf("server = %q\n", "http://"+registryAddr)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// localRef is where an image the manifests name by its public reference is pushed: the same
// repository path on the node's registry (docker.io's short names under library/).
func localRef(image string) (name.Reference, error) {
	public, err := name.ParseReference(image)
	if err != nil {
		return nil, err
	}
	return name.ParseReference(registryAddr+"/"+public.Context().RepositoryStr()+":"+public.Identifier(), name.Insecure)
}

// pushImages builds the three images the tests use, offline, and pushes them under every name
// the manifests and scenarios give them: the project's image from the freshly built binary (the
// Dockerfile's shape, internal/ociimage), a busybox image from Debian's static busybox with a
// link per applet, and the sandbox (pause) image.
func pushImages(o Options) error {
	bin, err := os.ReadFile(o.KoordinatorBinary)
	if err != nil {
		return err
	}
	idx, _, err := ociimage.Build(ociimage.Options{Platforms: []ociimage.Platform{{Arch: "amd64", Binary: bin}}, Epoch: time.Unix(0, 0)})
	if err != nil {
		return fmt.Errorf("the project's image: %w", err)
	}
	for _, tag := range o.KoordinatorImages {
		ref, err := localRef(tag)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx); err != nil {
			return fmt.Errorf("pushing %s: %w", tag, err)
		}
	}
	busybox, err := busyboxImage(o.BusyboxBinary)
	if err != nil {
		return fmt.Errorf("the busybox image: %w", err)
	}
	for _, tag := range o.BusyboxImages {
		ref, err := localRef(tag)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, busybox); err != nil {
			return fmt.Errorf("pushing %s: %w", tag, err)
		}
	}
	pause, err := fileImage(map[string]fileEntry{"pause": {mode: 0o755, path: o.paths.pause}}, v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"})
	if err != nil {
		return fmt.Errorf("the pause image: %w", err)
	}
	ref, err := localRef(o.versions.pauseImage)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, pause); err != nil {
		return fmt.Errorf("pushing %s: %w", o.versions.pauseImage, err)
	}
	return nil
}

// fileEntry is one entry of an image layer: a file copied from path or holding data, a folder
// (dir), or a symbolic link (link). mode is the tar header's, sticky bit included.
type fileEntry struct {
	mode int64
	path string
	data []byte
	dir  bool
	link string
}

// busyboxImage is busybox as its official image lays it out: the binary at /bin/busybox, a link
// per applet in /bin, /tmp, /root, a passwd and group naming root, PATH and CMD ["sh"].
func busyboxImage(binary string) (v1.Image, error) {
	out, err := exec.Command(binary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", binary, err)
	}
	files := map[string]fileEntry{
		"bin/busybox": {mode: 0o755, path: binary},
		"tmp":         {mode: 0o1777, dir: true},
		"root":        {mode: 0o700, dir: true},
		"etc/passwd":  {mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		"etc/group":   {mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\n")},
	}
	for _, d := range []string{"bin", "etc", "var", "home", "usr", "usr/bin", "usr/sbin", "sbin"} {
		files[d] = fileEntry{mode: 0o755, dir: true}
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			files["bin/"+applet] = fileEntry{mode: 0o777, link: "busybox"}
		}
	}
	return fileImage(files, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// fileImage is a linux/amd64 image of one layer holding files, with config.
func fileImage(files map[string]fileEntry, config v1.Config) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names) // parents before their entries
	for _, n := range names {
		e := files[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}
		data := e.data
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case e.path != "":
			b, err := os.ReadFile(e.path)
			if err != nil {
				return nil, err
			}
			data = b
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{Architecture: "amd64", OS: "linux", Config: config, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layer)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
