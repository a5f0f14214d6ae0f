package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestClusterServesObjects proves the test cluster is a real apiserver: what
// is written through client-go can be listed back.
func TestClusterServesObjects(t *testing.T) {
	ctx := t.Context()
	ns := createNamespace(t, "cluster-basic")
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "greeting", Labels: map[string]string{"app": "faro"}},
		Data:       map[string]string{"hello": "world"},
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	nss, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(nss.Items) != 1 || nss.Items[0].Name != ns {
		t.Fatalf("namespace list = %v, want exactly %s", nss.Items, ns)
	}
	cms, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=faro"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cms.Items) != 1 || cms.Items[0].Name != "greeting" || cms.Items[0].Data["hello"] != "world" {
		t.Fatalf("configmap list = %+v, want the one greeting configmap", cms.Items)
	}
	none, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=other"})
	if err != nil {
		t.Fatal(err)
	}
	if len(none.Items) != 0 {
		t.Fatalf("selector app=other matched %d configmaps, want 0", len(none.Items))
	}
}

// TestClusterSurvivesAPIServerRestart restarts the apiserver against the same
// etcd; data written before must still be there and the same client must
// reconnect.
func TestClusterSurvivesAPIServerRestart(t *testing.T) {
	ctx := t.Context()
	ns := createNamespace(t, "cluster-restart")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "durable"}, Data: map[string]string{"k": "v"}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.RestartAPIServer(); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	var got *corev1.ConfigMap
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = kube.CoreV1().ConfigMaps(ns).Get(ctx, "durable", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("configmap not readable after restart: %v", err)
	}
	if got.Data["k"] != "v" {
		t.Fatalf("configmap data after restart = %v, want k=v", got.Data)
	}
}
