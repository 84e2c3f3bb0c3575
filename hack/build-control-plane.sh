#!/usr/bin/env bash
# Builds the local test control plane from pinned sources, once per machine:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#     from test/testenv/tools (k8s.io/kubernetes, version read from its go.mod)
#     into .cache/controlplane/k8s-<version>/
#   etcd
#     from test/testenv/etcd (go.etcd.io/etcd/server/v3, version from its go.mod)
#     into .cache/controlplane/etcd-<version>/
# A binary that already exists and reports the pinned version with --version is
# not rebuilt. Writes nothing outside the repo's .cache/ and Go's module and
# build caches. Binaries are built to a temporary name and renamed into place,
# so an interrupted build never leaves a half-written binary behind.
#
# Environment: GO (default: go).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
TOOLS_MOD="$ROOT/test/testenv/tools"
ETCD_MOD="$ROOT/test/testenv/etcd"
CACHE="$ROOT/.cache/controlplane"

modversion() { # <go.mod> <module path>
  local v
  v="$(awk -v m="$2" '($1 == m && $2 ~ /^v/) { print $2; exit } ($1 == "require" && $2 == m) { print $3; exit }' "$1")"
  [[ -n "$v" ]] || { echo "build-control-plane: cannot find $2 in $1" >&2; exit 1; }
  echo "$v"
}

K8S_VERSION="$(modversion "$TOOLS_MOD/go.mod" k8s.io/kubernetes)"   # v1.37.2
ETCD_VERSION="$(modversion "$ETCD_MOD/go.mod" go.etcd.io/etcd/server/v3)" # v3.6.7
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"

k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
# Without these stamps every binary reports v0.0.0-master+$Format:%H$ and
# `kubectl version` cannot parse it (notes/control-plane.md, version trap).
K8S_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"

# built <binary> <version-args> <expected substring>: true if the binary exists
# and reports the pinned version.
built() {
  local bin="$1" args="$2" want="$3" out
  [[ -x "$bin" ]] || return 1
  out="$("$bin" $args 2>&1)" || return 1
  [[ "$out" == *"$want"* ]]
}

# Go's own temporary build folders go under .cache too.
export GOTMPDIR="$ROOT/.cache/tmp"
BUILD_TMP=""
trap 'if [[ -n "$BUILD_TMP" ]]; then rm -f "$BUILD_TMP"; fi' EXIT

# build <module dir> <package> <output> <ldflags>
build() {
  local dir="$1" pkg="$2" out="$3" ldflags="$4" start
  start=$SECONDS
  BUILD_TMP="$out.tmp.$$"
  mkdir -p "$GOTMPDIR"
  echo "build-control-plane: building $(basename "$out") ($pkg)"
  (cd "$dir" && "$GO" build -trimpath -ldflags "$ldflags" -o "$BUILD_TMP" "$pkg")
  mv -f "$BUILD_TMP" "$out"
  BUILD_TMP=""
  echo "build-control-plane: built $(basename "$out") in $((SECONDS - start)) s ($(du -m "$out" | cut -f1) MB)"
}

todo_k8s=()
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  built "$K8S_DIR/$c" --version "Kubernetes $K8S_VERSION" || todo_k8s+=("$c")
done
built "$K8S_DIR/kubectl" "version --client" "Client Version: $K8S_VERSION" || todo_k8s+=(kubectl)
todo_etcd=()
built "$ETCD_DIR/etcd" --version "etcd Version: ${ETCD_VERSION#v}" || todo_etcd+=(etcd)

if (( ${#todo_k8s[@]} == 0 && ${#todo_etcd[@]} == 0 )); then
  echo "build-control-plane: Kubernetes $K8S_VERSION and etcd $ETCD_VERSION already built in .cache/controlplane"
  exit 0
fi

total=$SECONDS
if (( ${#todo_k8s[@]} > 0 )); then
  echo "building the Kubernetes $K8S_VERSION control plane once (~11 min on 2 cores); cached in .cache/controlplane"
  mkdir -p "$K8S_DIR"
  for c in "${todo_k8s[@]}"; do
    build "$TOOLS_MOD" "k8s.io/kubernetes/cmd/$c" "$K8S_DIR/$c" "$K8S_LDFLAGS"
  done
fi
if (( ${#todo_etcd[@]} > 0 )); then
  echo "building etcd $ETCD_VERSION once (~1 min on 2 cores); cached in .cache/controlplane"
  mkdir -p "$ETCD_DIR"
  build "$ETCD_MOD" go.etcd.io/etcd/server/v3 "$ETCD_DIR/etcd" "-s -w"
fi

for c in "${todo_k8s[@]}"; do
  if [[ $c == kubectl ]]; then args="version --client"; want="Client Version: $K8S_VERSION"; else args=--version; want="Kubernetes $K8S_VERSION"; fi
  built "$K8S_DIR/$c" "$args" "$want" || { echo "build-control-plane: $c does not report $K8S_VERSION" >&2; exit 1; }
done
if (( ${#todo_etcd[@]} > 0 )); then
  built "$ETCD_DIR/etcd" --version "etcd Version: ${ETCD_VERSION#v}" || { echo "build-control-plane: etcd does not report $ETCD_VERSION" >&2; exit 1; }
fi
echo "build-control-plane: done in $((SECONDS - total)) s; binaries in .cache/controlplane/{k8s-$K8S_VERSION,etcd-$ETCD_VERSION}"
