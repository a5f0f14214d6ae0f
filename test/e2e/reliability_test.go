package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	corev1 "k8s.io/api/core/v1"
)

// TestRapidUpdatesInOrder: 50 quick updates to one object give 50 UPDATED
// events, in resourceVersion order.
func TestRapidUpdatesInOrder(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "rapid")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
`, ns))
	createCM(t, ns, "hot", nil)
	var rvs []string
	for i := 1; i <= 50; i++ {
		rvs = append(rvs, updateCM(t, ns, "hot", strconv.Itoa(i)).ResourceVersion)
	}
	updated := msg("UPDATED", "v1/configmaps", ns+"/hot")
	f.waitFor(waitTime, "50 UPDATED events", func(evs []event, _ []string) bool { return countMsg(evs, updated) >= 50 })
	var got []string
	for _, e := range f.snapshot() {
		if e.Message == updated {
			got = append(got, e.ResourceVersion)
		}
	}
	if len(got) != 50 {
		t.Fatalf("got %d UPDATED events, want 50", len(got))
	}
	for i := range rvs {
		if got[i] != rvs[i] {
			t.Fatalf("UPDATED #%d has resource_version %s, want %s (order or content lost)\ngot  %v\nwant %v", i+1, got[i], rvs[i], got, rvs)
		}
	}
}

// TestAPIServerOutage: the apiserver Faro talks to goes down; objects are
// written meanwhile through a second apiserver on the same etcd; when the
// first comes back every one of them is reported, and the daemon never
// exited. Not parallel: it takes the shared apiserver down.
func TestAPIServerOutage(t *testing.T) {
	ns := createNamespace(t, "outage")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
`, ns))
	createCM(t, ns, "before", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/before"), waitTime)

	var during []string
	duringOutage(t, func(kube2 kubernetes.Interface) {
		for i := range 5 {
			name := fmt.Sprintf("during-%d", i)
			if _, err := kube2.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatalf("create through second apiserver: %v", err)
			}
			during = append(during, name)
		}
		if err := kube2.CoreV1().ConfigMaps(ns).Delete(t.Context(), "before", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if !f.running() {
			t.Fatal("faro exited while the apiserver was down")
		}
	})

	for _, name := range during {
		f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/"+name), 90*time.Second)
	}
	f.waitEvent(msg("DELETED", "v1/configmaps", ns+"/before"), 90*time.Second)
	if !f.running() {
		t.Fatal("faro exited after the outage")
	}
	f.settle(func() { createCM(t, ns, "after", nil) }, msg("ADDED", "v1/configmaps", ns+"/after"))
	for _, name := range during {
		assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/"+name), 1)
	}
	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/before"), 1)
}

// duringOutage stops the test cluster's apiserver, runs write against a
// second apiserver on the same etcd (so that the changes really happen
// while Faro's server is away), then starts the first one again.
func duringOutage(t *testing.T, write func(kube2 kubernetes.Interface)) {
	t.Helper()
	if err := cluster.StopAPIServer(); err != nil {
		t.Fatalf("stop apiserver: %v", err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = cluster.StartAPIServer()
		}
	}()
	cfg2, stop2, err := cluster.SecondAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	kube2, err := kubernetes.NewForConfig(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	write(kube2)
	if err := stop2(); err != nil {
		t.Fatalf("stop second apiserver: %v", err)
	}
	if err := cluster.StartAPIServer(); err != nil {
		t.Fatalf("restart apiserver: %v", err)
	}
	restarted = true
}
