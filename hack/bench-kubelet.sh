#!/usr/bin/env bash
# The example Job with koordinator beside the same Job with a native sidecar, on the real test node
# (see hack/benchkubelet). Needs root and make kubelet-node; says why and does nothing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./hack/benchkubelet -bin bin/koordinator -runs "${RUNS_KUBELET:-5}" -doc docs/performance.md
