//go:build tools

// Package etcd pins the etcd server that the local test environment builds
// with `go build go.etcd.io/etcd/server/v3` (see hack/build-control-plane.sh).
// `go install go.etcd.io/etcd/server/v3@v3.6.7` does not work because etcd's
// go.mod has replace directives; this wrapper module is the supported way.
package etcd

import (
	_ "go.etcd.io/etcd/server/v3"
)
