package celpred

import (
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/openapi"
	"k8s.io/client-go/openapi/openapitest"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

var deploymentGVK = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}

// openAPIDiscovery is a fake discovery client serving OpenAPI v3 documents
// from testdata, keyed by discovery path ("apis/apps/v1").
type openAPIDiscovery struct {
	*fake.FakeDiscovery
	client openapi.Client
}

func (d *openAPIDiscovery) OpenAPIV3() openapi.Client { return d.client }

func newOpenAPIDiscovery(t testing.TB, docs map[string]string) discovery.DiscoveryInterface {
	t.Helper()
	c := openapitest.NewFakeClient()
	for path, file := range docs {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		c.PathsMap[path] = openapitest.FakeGroupVersion{GVSpec: b}
	}
	return &openAPIDiscovery{FakeDiscovery: &fake.FakeDiscovery{Fake: &clienttesting.Fake{}}, client: c}
}

// deploymentSchema resolves the Deployment schema from the testdata
// document through NewSchemaResolver, as the engine does with a cluster.
func deploymentSchema(t testing.TB) *spec.Schema {
	t.Helper()
	d := newOpenAPIDiscovery(t, map[string]string{"apis/apps/v1": "apps-v1-deployment.openapi-v3.json"})
	s, err := NewSchemaResolver(d).ResolveSchema(deploymentGVK)
	if err != nil || s == nil {
		t.Fatalf("ResolveSchema: %v, %v", s, err)
	}
	return s
}

// loadObject reads an unstructured object from testdata.
func loadObject(t testing.TB, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	// The apimachinery decoder, as for unstructured objects: whole numbers
	// become int64, others float64.
	var m map[string]any
	if err := utiljson.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
