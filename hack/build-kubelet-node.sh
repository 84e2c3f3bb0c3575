#!/usr/bin/env bash
# Builds the real test node's binaries (test/kubelet) from pinned sources, once per machine, into
# .cache/kubelet-node/<name>-<version>/:
#   kubelet                     k8s.io/kubernetes/cmd/kubelet from test/testenv/tools (the control
#                               plane's version and module, built after it: ~1–2 min more)
#   containerd, containerd-shim-runc-v2
#                               github.com/containerd/containerd/v2 (CGO_ENABLED=0, no_btrfs)
#   runc                        github.com/opencontainers/runc, cgo with -tags seccomp, linked
#                               statically against Debian's libseccomp-dev (fetched with apt-get
#                               download into .cache and unpacked there; nothing is installed)
#   bridge, host-local, loopback
#                               github.com/containernetworking/plugins
#   pause                       test/kubelet/pause (this repo)
# Versions: test/kubelet/versions.env (and the kubelet's in test/testenv/tools/go.mod). A binary
# that exists and reports its pinned version is not rebuilt. Writes nothing outside the repo's
# .cache/ and Go's module and build caches.
#
# Environment: GO (default: go).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
# shellcheck source=../test/kubelet/versions.env
source "$ROOT/test/kubelet/versions.env"
TOOLS_MOD="$ROOT/test/testenv/tools"
CACHE="$ROOT/.cache/kubelet-node"
K8S_VERSION="$(awk '($1 == "require" && $2 == "k8s.io/kubernetes") { print $3; exit }' "$TOOLS_MOD/go.mod")"
[[ -n "$K8S_VERSION" ]] || { echo "build-kubelet-node: cannot find k8s.io/kubernetes in $TOOLS_MOD/go.mod" >&2; exit 1; }

export GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTMPDIR="$ROOT/.cache/tmp"
mkdir -p "$CACHE" "$GOTMPDIR"

# built <binary> <expected substring> <args...>: the binary exists and reports its pinned version.
built() {
  local bin="$1" want="$2" out
  shift 2
  [[ -x "$bin" ]] || return 1
  out="$("$bin" "$@" 2>&1)" || return 1
  [[ "$out" == *"$want"* ]]
}

# install_into <dir> <label> <go install args...>: go install into a temporary GOBIN, then rename
# into place, so an interrupted build never leaves a half-written binary behind.
install_into() {
  local dir="$1" label="$2" tmp start=$SECONDS
  shift 2
  tmp="$(mktemp -d "$CACHE/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' RETURN
  echo "build-kubelet-node: building $label"
  GOBIN="$tmp" "$GO" install -trimpath "$@"
  mkdir -p "$dir"
  for f in "$tmp"/*; do mv -f "$f" "$dir/"; done
  echo "build-kubelet-node: built $label in $((SECONDS - start)) s"
}

total=$SECONDS

KUBELET_DIR="$CACHE/kubelet-$K8S_VERSION"
if ! built "$KUBELET_DIR/kubelet" "Kubernetes $K8S_VERSION" --version; then
  echo "building the kubelet $K8S_VERSION once (~1–2 min after the control plane, ~14 min alone); cached in .cache/kubelet-node"
  minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  mkdir -p "$KUBELET_DIR"
  start=$SECONDS
  (cd "$TOOLS_MOD" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$ldflags" -o "$KUBELET_DIR/kubelet.tmp.$$" k8s.io/kubernetes/cmd/kubelet)
  mv -f "$KUBELET_DIR/kubelet.tmp.$$" "$KUBELET_DIR/kubelet"
  echo "build-kubelet-node: built kubelet $K8S_VERSION in $((SECONDS - start)) s"
fi

CONTAINERD_DIR="$CACHE/containerd-$CONTAINERD_VERSION"
if ! built "$CONTAINERD_DIR/containerd" "$CONTAINERD_VERSION" --version || [[ ! -x "$CONTAINERD_DIR/containerd-shim-runc-v2" ]]; then
  echo "building containerd $CONTAINERD_VERSION once (~3 min on 2 cores); cached in .cache/kubelet-node"
  CGO_ENABLED=0 install_into "$CONTAINERD_DIR" "containerd $CONTAINERD_VERSION" -tags no_btrfs \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
fi

RUNC_DIR="$CACHE/runc-$RUNC_VERSION"
if ! built "$RUNC_DIR/runc" "libseccomp: " --version; then
  echo "building runc $RUNC_VERSION with seccomp once (~1 min); cached in .cache/kubelet-node"
  seccomp="$CACHE/libseccomp"
  if [[ ! -f "$seccomp/usr/lib/x86_64-linux-gnu/pkgconfig/libseccomp.pc" ]]; then
    echo "build-kubelet-node: fetching Debian's $LIBSECCOMP_DEB (apt-get download, unpacked under .cache; nothing installed)"
    dl="$(mktemp -d "$CACHE/.deb.XXXXXX")"
    chmod 0777 "$dl" # apt-get downloads as its _apt user where it can
    (cd "$dl" && apt-get download "$LIBSECCOMP_DEB" >/dev/null) || {
      echo "build-kubelet-node: apt-get download $LIBSECCOMP_DEB failed; run apt-get update (as root) and retry" >&2; rm -rf "$dl"; exit 1; }
    rm -rf "$seccomp.tmp" && mkdir -p "$seccomp.tmp"
    dpkg-deb -x "$dl"/*.deb "$seccomp.tmp"
    rm -rf "$dl" "$seccomp" && mv "$seccomp.tmp" "$seccomp"
  fi
  # The .pc file says prefix=/usr; the sysroot points it at the unpacked copy. -static: the
  # binary needs no libseccomp.so at run time.
  CGO_ENABLED=1 PKG_CONFIG_PATH="$seccomp/usr/lib/x86_64-linux-gnu/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$seccomp" \
    install_into "$RUNC_DIR" "runc $RUNC_VERSION" -tags "seccomp netgo osusergo" \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v} -extldflags -static" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
  built "$RUNC_DIR/runc" "libseccomp: " --version || { echo "build-kubelet-node: runc does not report libseccomp" >&2; exit 1; }
fi

CNI_DIR="$CACHE/cni-plugins-$CNI_PLUGINS_VERSION"
if [[ ! -x "$CNI_DIR/bridge" || ! -x "$CNI_DIR/host-local" || ! -x "$CNI_DIR/loopback" ]]; then
  echo "building the CNI plugins $CNI_PLUGINS_VERSION once (~1 min); cached in .cache/kubelet-node"
  CGO_ENABLED=0 install_into "$CNI_DIR" "CNI plugins $CNI_PLUGINS_VERSION (bridge, host-local, loopback)" -ldflags "-s -w" \
    "github.com/containernetworking/plugins/plugins/main/bridge@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$CNI_PLUGINS_VERSION"
fi

# The pause binary is the repo's own: rebuilt each time (a second), never stale.
(cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$GO" build -trimpath -ldflags "-s -w" -o "$CACHE/pause.tmp.$$" ./test/kubelet/pause)
mv -f "$CACHE/pause.tmp.$$" "$CACHE/pause"

echo "build-kubelet-node: done in $((SECONDS - total)) s; binaries in .cache/kubelet-node"
