package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestPluginsSeeTheAPIObjects: Faro caches objects as their stripped JSON
// and decodes them only for CEL and plugins. What a plugin gets is the
// object the API serves, less managedFields and the last-applied
// annotation (kept with keep_last_applied: true): for an object of the
// initial events and one created later, on ADDED and UPDATED; and CEL
// reads object and oldObject of an UPDATED.
func TestPluginsSeeTheAPIObjects(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep_last_applied=%v", keep), func(t *testing.T) { testPluginsSeeTheAPIObjects(t, keep) })
	}
}

func testPluginsSeeTheAPIObjects(t *testing.T, keepLastApplied bool) {
	ns := createNamespace(t, "objects")
	wasm := filepath.Join(builtPlugins(t), "guest.wasm")
	deployments := dyn.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace(ns)
	// served holds the API's answers, as JSON, by resource version.
	served := map[string][]byte{}
	serve := func(u *unstructured.Unstructured, err error) *unstructured.Unstructured {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		served[u.GetResourceVersion()] = raw
		return u
	}
	create := func(name string) {
		t.Helper()
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(strippable(deployment(name)))
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetAPIVersion("apps/v1")
		u.SetKind("Deployment")
		serve(deployments.Create(t.Context(), u, metav1.CreateOptions{}))
	}
	create("echo.listed")
	f := startFaro(t, fmt.Sprintf(`
keep_last_applied: %[3]v
plugins:
  - name: echo
    path: %[1]s
resources:
  - gvr: apps/v1/deployments
    namespace_patterns: [%[2]q]
    plugins: [echo]
  - gvr: apps/v1/deployments
    namespace_patterns: [%[2]q]
    event_types: [UPDATED]
    cel: "object.spec.replicas == 3 && oldObject.spec.replicas == 2 && object.kind == 'Deployment' && !has(object.metadata.managedFields)"
`, wasm, ns, keepLastApplied))
	f.waitSynced()
	create("echo.watched")
	f.waitFor(waitTime, "the ADDED records", func([]event, []string) bool { return len(recordsOf(f.raw, "echo")) == 2 })
	d := serve(deployments.Get(t.Context(), "echo.watched", metav1.GetOptions{}))
	if err := unstructured.SetNestedField(d.Object, int64(3), "spec", "replicas"); err != nil {
		t.Fatal(err)
	}
	serve(deployments.Update(t.Context(), d, metav1.UpdateOptions{}))
	f.waitFor(waitTime, "the UPDATED record and CEL match", func(evs []event, _ []string) bool {
		return len(recordsOf(f.raw, "echo")) == 3 && countMsg(evs, "CONFIG [UPDATED] apps/v1/deployments "+ns+"/echo.watched") == 2
	})

	// check compares what the plugin got with the API's answer at the
	// same version, less what Faro strips.
	check := func(what string, got map[string]any) {
		t.Helper()
		md, _ := got["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		rv, _ := md["resourceVersion"].(string)
		raw, ok := served[rv]
		if !ok {
			t.Fatalf("%s %s: the API served no version %s", what, name, rv)
		}
		var want map[string]any
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		wmd := want["metadata"].(map[string]any)
		if wmd["managedFields"] == nil || wmd["annotations"].(map[string]any)[corev1.LastAppliedConfigAnnotation] == nil {
			t.Fatalf("%s: the API's object has nothing to strip", name)
		}
		delete(wmd, "managedFields")
		if !keepLastApplied {
			delete(wmd["annotations"].(map[string]any), corev1.LastAppliedConfigAnnotation)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			exp, _ := json.Marshal(want)
			t.Errorf("%s %s: the plugin got\n%s\nwant the API's object without managedFields (keep_last_applied: %v)\n%s", what, name, g, keepLastApplied, exp)
		}
	}
	olds := 0
	for _, r := range f.records("echo") {
		var rec struct {
			Type      string
			Object    map[string]any
			OldObject map[string]any `json:"old_object"`
		}
		if err := json.Unmarshal(r.Record, &rec); err != nil {
			t.Fatalf("echo record %s: %v", r.Record, err)
		}
		check(rec.Type+" object", rec.Object)
		if rec.Type == "UPDATED" {
			olds++
			check("UPDATED old object", rec.OldObject)
		}
	}
	if olds != 1 {
		t.Errorf("%d UPDATED records, want 1", olds)
	}
}

// strippable gives d what Faro strips (the last-applied annotation; the
// server adds managedFields) and more of a body to compare.
func strippable(d *appsv1.Deployment) *appsv1.Deployment {
	d.Labels = d.Spec.Selector.MatchLabels
	d.Annotations = map[string]string{
		corev1.LastAppliedConfigAnnotation: `{"apiVersion":"apps/v1","kind":"Deployment"}`,
		"team":                             "search",
	}
	replicas := int32(2)
	d.Spec.Replicas = &replicas
	d.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	return d
}
