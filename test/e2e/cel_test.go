package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faro-dev/faro/internal/daemon"
)

// TestCELOnConfigMapData: a CEL rule on ConfigMap data selects only the
// objects it describes, on every event type.
func TestCELOnConfigMapData(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "cel-data")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    cel: "has(object.data) && 'tier' in object.data && object.data.tier == 'gold'"
`, ns))
	mk := func(name, tier string) {
		if _, err := kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"tier": tier},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("gold-1", "gold")
	mk("silver-1", "silver")
	createCM(t, ns, "no-tier", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/gold-1"), waitTime)
	f.settle(func() { mk("gold-2", "gold") }, msg("ADDED", "v1/configmaps", ns+"/gold-2"))
	assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/silver-1"), msg("ADDED", "v1/configmaps", ns+"/no-tier"))
}

// TestCELOnlySpecChanges: a rule on Deployments that fires only on spec
// changes ignores label-only and status-only updates.
func TestCELOnlySpecChanges(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "cel-spec")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: apps/v1/deployments
    namespace_patterns: [%q]
    event_types: [UPDATED]
    cel: "changedPaths.exists(p, p.startsWith('spec.'))"
`, ns))
	ctx := t.Context()
	replicas := int32(1)
	labels := map[string]string{"app": "web"}
	d, err := kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Label-only update.
	d.Labels = map[string]string{"team": "a"}
	if d, err = kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Status-only update, through the status subresource (no controller
	// writes status in the test cluster).
	d.Status.Replicas, d.Status.ObservedGeneration = 1, d.Generation
	if d, err = kube.AppsV1().Deployments(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Spec change.
	replicas = 3
	d.Spec.Replicas = &replicas
	if d, err = kube.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	updated := msg("UPDATED", "apps/v1/deployments", ns+"/web")
	f.waitEvent(updated, waitTime)
	// Events of one object are processed in order, so the label and status
	// updates were evaluated before the spec change was logged.
	evs := f.snapshot()
	if n := countMsg(evs, updated); n != 1 {
		t.Fatalf("%d UPDATED events, want only the spec change:\n%s", n, joinEvents(evs))
	}
	for _, e := range evs {
		if e.Message == updated && e.ResourceVersion != d.ResourceVersion {
			t.Errorf("matched resource_version %s, want the spec change's %s", e.ResourceVersion, d.ResourceVersion)
		}
	}
}

// TestCELMisspelledFieldRejectedAtStartup: with the cluster's OpenAPI schema
// at hand, a misspelled field on a built-in resource is a startup error
// naming the entry, with line:col and a caret.
func TestCELMisspelledFieldRejectedAtStartup(t *testing.T) {
	t.Parallel()
	path := configFile(t, `
resources:
  - gvr: apps/v1/deployments
    cel: "object.spec.replica > 1"
`)
	var stderr syncBuffer
	err := daemon.Run(context.Background(), daemon.Options{ConfigPath: path, RestConfig: cluster.Config, Stdout: &stderr, Stderr: &stderr})
	if err == nil {
		t.Fatal("faro started with a misspelled field in a CEL rule")
	}
	for _, want := range []string{"faro.yaml:4: resources[0].cel[0]: ERROR: <input>:1:12: undefined field 'replica'", "^"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// Offline, without a schema, the same file is accepted (dynamic typing).
	if err := daemon.Validate(t.Context(), path); err != nil {
		t.Errorf("offline validate rejected a dynamically valid rule: %v", err)
	}
}
