//go:build tools

// Package kube pins the kube-apiserver that Faro's e2e tests and demo run
// against. It is a module of its own so that the daemon's go.mod never sees
// k8s.io/kubernetes and its replace lines.
package kube

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
