package e2e

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// createCRD creates a namespaced CRD "widgets" in group and waits until it
// is established. The CRD is deleted at the end of the test if still there.
func createCRD(t *testing.T, group string) schema.GroupVersionResource {
	t.Helper()
	name := "widgets." + group
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"group": group,
			"scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec": map[string]any{"type": "object", "properties": map[string]any{
							"size":  map[string]any{"type": "integer"},
							"color": map[string]any{"type": "string"},
						}},
					},
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(t.Context(), crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}
	t.Cleanup(func() {
		_ = dyn.Resource(crdGVR).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("CRD %s not established: %v", name, err)
	}
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}
}

func createWidget(t *testing.T, gvr schema.GroupVersionResource, ns, name string) {
	t.Helper()
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.Group + "/v1",
		"kind":       "Widget",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"size": int64(3), "color": "blue"},
	}}
	// Discovery in the apiserver can lag the Established condition by a moment.
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, w, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("create widget %s/%s: %v", ns, name, err)
	}
}

// TestCRDAppearsAndDisappears: a CRD created after start gets its informer
// within seconds (for both config formats); deleting it stops the informer
// and the daemon keeps running and reporting other resources.
func TestCRDAppearsAndDisappears(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "crd")
	group := fmt.Sprintf("e2e%d.faro.dev", time.Now().UnixNano()%1e6)
	gvrText := group + "/v1/widgets"
	f := startFaro(t, fmt.Sprintf(`
namespaces:
  - name_pattern: %[1]q
    resources:
      %[2]q:
        name_pattern: "ns-.*"
      v1/configmaps: {}
resources:
  - gvr: widgets.%[3]s
    namespace_patterns: [%[1]q]
    name_pattern: "res-.*"
`, ns, gvrText, group))
	f.waitDiag(waitTime, "resource not watched yet")

	gvr := createCRD(t, group)
	// Created before Faro has listed the new resource, but after it was
	// served: news, not initial state.
	createWidget(t, gvr, ns, "ns-early")
	f.waitDiag(waitTime, "informer synced", gvrText)
	createWidget(t, gvr, ns, "ns-w1")
	createWidget(t, gvr, ns, "res-w1")
	createWidget(t, gvr, ns, "other")
	f.waitEvent(msg("ADDED", gvrText, ns+"/ns-w1"), waitTime)
	f.waitEvent(msg("ADDED", gvrText, ns+"/res-w1"), waitTime)
	f.waitEvent(msg("ADDED", gvrText, ns+"/ns-early"), waitTime)
	for _, e := range f.snapshot() {
		if e.GVR == gvrText && e.Initial {
			t.Errorf("%s: a custom resource created after its CRD was served is marked initial", e)
		}
	}

	if err := dyn.Resource(crdGVR).Delete(t.Context(), "widgets."+group, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitDiag(waitTime, "informer stopped", gvrText)
	if !f.running() {
		t.Fatal("faro exited after the CRD was deleted")
	}
	// Deleting a CRD deletes its custom resources first: those DELETED
	// events are reported although the resource is gone by the time they
	// are processed.
	f.waitEvent(msg("DELETED", gvrText, ns+"/ns-w1"), waitTime)
	f.waitEvent(msg("DELETED", gvrText, ns+"/res-w1"), waitTime)
	// The daemon still reports other resources, and the stopped watch does
	// not keep retrying the deleted resource.
	f.settle(func() { createCM(t, ns, "after-crd", nil) }, msg("ADDED", "v1/configmaps", ns+"/after-crd"))
	notFound := f.countDiag("resource not found; rediscovering")
	f.settle(func() { createCM(t, ns, "after-crd-2", nil) }, msg("ADDED", "v1/configmaps", ns+"/after-crd-2"))
	f.settle(func() { createCM(t, ns, "after-crd-3", nil) }, msg("ADDED", "v1/configmaps", ns+"/after-crd-3"))
	if n := f.countDiag("resource not found; rediscovering"); n != notFound {
		t.Errorf("the deleted resource is still being watched: %d more not-found errors", n-notFound)
	}
	assertNone(t, f, msg("ADDED", gvrText, ns+"/other"))
	for _, e := range f.snapshot() {
		if e.GVR == gvrText && e.Name == "ns-w1" && e.Rule != fmt.Sprintf("namespaces[0].resources[%q]", gvrText) {
			t.Errorf("ns-w1 matched by %s", e.Rule)
		}
		if e.GVR == gvrText && e.Name == "res-w1" && e.Rule != "resources[0]" {
			t.Errorf("res-w1 matched by %s", e.Rule)
		}
	}
}

// TestResourceServedLater: a resource that starts being served while Faro
// runs (a CRD gains a version) already has objects: Faro's first list of it
// reports those as initial, and what is created afterwards as news.
func TestResourceServedLater(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "served")
	group := fmt.Sprintf("e2e%d.faro.dev", time.Now().UnixNano()%1e6)
	v1 := createCRD(t, group)
	createWidget(t, v1, ns, "old-1")
	createWidget(t, v1, ns, "old-2")
	gvrText := group + "/v2/widgets"
	f := startFaro(t, fmt.Sprintf("resources:\n  - gvr: %s\n    namespace_patterns: [%q]\n", gvrText, ns))
	f.waitDiag(waitTime, "resource not watched yet")

	// Serve v2 too, the same schema (no conversion needed).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crd, err := dyn.Resource(crdGVR).Get(t.Context(), "widgets."+group, metav1.GetOptions{})
		if err != nil {
			return err
		}
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		v2 := runtime.DeepCopyJSONValue(versions[0]).(map[string]any)
		v2["name"], v2["storage"] = "v2", false
		if err := unstructured.SetNestedSlice(crd.Object, append(versions, v2), "spec", "versions"); err != nil {
			return err
		}
		_, err = dyn.Resource(crdGVR).Update(t.Context(), crd, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("serve v2: %v", err)
	}
	f.waitDiag(waitTime, "informer synced", gvrText)
	createWidget(t, v1, ns, "new-1")
	for _, n := range []string{"old-1", "old-2", "new-1"} {
		f.waitEvent(msg("ADDED", gvrText, ns+"/"+n), waitTime)
	}
	got := map[string]bool{}
	for _, e := range f.snapshot() {
		if e.GVR == gvrText && e.Type == "ADDED" {
			got[e.Name] = e.Initial
		}
	}
	if want := map[string]bool{"old-1": true, "old-2": true, "new-1": false}; !maps.Equal(got, want) {
		t.Errorf("ADDED events by name (initial?) %v, want %v", got, want)
	}
}
