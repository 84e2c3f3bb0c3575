#!/usr/bin/env bash
# Stop and start reaction, then cold start, time to first sync, RSS and API cost of idle wrappers,
# then many wrappers against the one API server, all against one local control plane (see
# hack/benchreaction); writes the "Stop reaction", "Start reaction", "Cold start and idle cost"
# and "Scale" sections of docs/performance.md. About 37 min in all at the defaults (2026-11-23): each reaction
# waits past the wrappers' release of start-up memory (1.2 s), the idle wrappers take IDLE (5 min,
# the issue's window) and the scale run SCALE_IDLE plus its start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./hack/benchreaction -bin bin/koordinator -n "${REACTION_RUNS:-200}" \
	-cold "${COLD_RUNS:-100}" -idle "${IDLE:-5m}" \
	-scale-pods "${SCALE_PODS:-100}" -scale-idle "${SCALE_IDLE:-5m}" -scale-runs "${SCALE_RUNS:-100}" \
	-doc docs/performance.md
