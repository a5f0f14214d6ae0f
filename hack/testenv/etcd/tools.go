//go:build tools

// Package etcd pins the etcd server that backs the test kube-apiserver. It
// lives in a module of its own so its dependencies never fight kubernetes'.
package etcd

import _ "go.etcd.io/etcd/server/v3"
