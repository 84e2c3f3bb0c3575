#!/usr/bin/env bash
# Start-up cost of koordinator with an empty spec (see hack/benchstartup).
set -euo pipefail
cd "$(dirname "$0")/.."
go run ./hack/benchstartup -bin bin/koordinator -n "${RUNS:-200}" -doc docs/performance.md
