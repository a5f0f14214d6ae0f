// Package e2e runs Faro against a real kube-apiserver and etcd started on
// loopback by internal/testcluster. Nothing here is faked.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/faro-dev/faro/internal/testcluster"
)

// cluster is shared by every test in the package; each test works in
// namespaces of its own.
var (
	cluster *testcluster.Cluster
	kube    kubernetes.Interface
	dyn     dynamic.Interface
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	cluster, err = testcluster.Start(context.Background(), testcluster.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop cluster:", err)
		}
	}()
	// The tests write fast; client-go's default 5 QPS would throttle them.
	cfg := rest.CopyConfig(cluster.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	if kube, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if dyn, err = dynamic.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}
