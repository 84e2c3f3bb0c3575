//go:build tools

// Package tools pins the Kubernetes commands that the local test environment
// builds: the control plane (hack/build-control-plane.sh) and the kubelet of
// the real test node (hack/build-kubelet-node.sh). It is never compiled into
// koordinator.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
