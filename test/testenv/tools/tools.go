//go:build tools

// Package tools pins the Kubernetes control-plane commands that the local
// test environment builds (see hack/build-control-plane.sh). It is never
// compiled into koordinator.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
