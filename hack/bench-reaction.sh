#!/usr/bin/env bash
# Stop reaction through the pod-local channel and through the API, against a local control
# plane (see hack/benchreaction); writes the "Stop reaction" section of docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./hack/benchreaction -bin bin/koordinator -n "${REACTION_RUNS:-200}" -doc docs/performance.md
