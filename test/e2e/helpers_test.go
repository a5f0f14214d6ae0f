package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// createNamespace creates a namespace named after prefix with a random
// suffix and removes it (finalizer included: there is no namespace
// controller in the test cluster) when the test ends.
func createNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: strings.ToLower(prefix) + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() { deleteNamespace(t, ns.Name) })
	return ns.Name
}

// deleteNamespace deletes a namespace and clears its finalizers through the
// /finalize subresource so that it really goes away.
func deleteNamespace(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	if err := kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Logf("delete namespace %s: %v", name, err)
		return
	}
	ns, err := kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return
	}
	ns.Spec.Finalizers = nil
	if _, err := kube.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Logf("finalize namespace %s: %v", name, err)
	}
}

// configFile writes a Faro config into a folder of its own and returns its
// path (a state_dir in it is relative to that folder).
func configFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faro.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
