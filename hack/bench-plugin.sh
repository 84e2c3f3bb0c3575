#!/usr/bin/env bash
# The kubectl plugin's figures: inject over 1,000 documents (500 plain Jobs wired, 500 ConfigMaps
# passed through; BenchmarkInject1000Documents) and the plugin's size for linux/amd64 as
# make build-plugin-all builds it.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench Inject1000Documents -benchtime "${RUNS:-10}x" -benchmem ./cmd/kubectl-koordinator |
	awk '/^Benchmark/ { printf "inject, 1,000 documents: %.3f s per run (%d runs), %.0f MB allocated\n", $3/1e9, $2, $7/1e6 }'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOOS=linux GOARCH=amd64 CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/kubectl-koordinator" ./cmd/kubectl-koordinator
printf 'kubectl-koordinator, linux/amd64: %d bytes\n' "$(stat -c %s "$tmp/kubectl-koordinator")"
