#!/usr/bin/env bash
# Stop reaction through the pod-local channel and through the API, then cold start, time to first
# sync, RSS and API cost of idle wrappers, against one local control plane (see
# hack/benchreaction); writes the "Stop reaction" and "Cold start and idle cost" sections of
# docs/performance.md. The idle part alone takes ~2.5 min (COLD_RUNS, IDLE).
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./hack/benchreaction -bin bin/koordinator -n "${REACTION_RUNS:-200}" \
	-cold "${COLD_RUNS:-100}" -idle "${IDLE:-2m}" -doc docs/performance.md
