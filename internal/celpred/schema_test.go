package celpred

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/openapi/openapitest"
	clienttesting "k8s.io/client-go/testing"
)

func TestSchemaResolver(t *testing.T) {
	d := newOpenAPIDiscovery(t, map[string]string{"apis/apps/v1": "apps-v1-deployment.openapi-v3.json"})
	r := NewSchemaResolver(d)

	s, err := r.ResolveSchema(deploymentGVK)
	if err != nil || s == nil {
		t.Fatalf("Deployment: %v, %v", s, err)
	}
	// $refs (plain and wrapped in allOf, as the apiserver publishes them) are inlined.
	replicas := s.Properties["spec"].Properties["replicas"]
	if !replicas.Type.Contains("integer") {
		t.Errorf("spec.replicas: %#v", replicas)
	}
	if image := s.Properties["spec"].Properties["template"].Properties["spec"].Properties["containers"].Items.Schema.Properties["image"]; !image.Type.Contains("string") {
		t.Errorf("containers[].image: %#v", image)
	}

	for _, gvk := range []schema.GroupVersionKind{
		{Group: "apps", Version: "v1", Kind: "StatefulSet"},   // group-version published, kind not
		{Group: "example.com", Version: "v1", Kind: "Widget"}, // group-version not published
	} {
		if s, err := r.ResolveSchema(gvk); s != nil || err != nil {
			t.Errorf("%v: %v, %v; want nil, nil", gvk, s, err)
		}
	}

	c := openapitest.NewFakeClient()
	c.ForcedErr = errors.New("boom")
	broken := &openAPIDiscovery{FakeDiscovery: &fake.FakeDiscovery{Fake: &clienttesting.Fake{}}, client: c}
	if _, err := NewSchemaResolver(broken).ResolveSchema(deploymentGVK); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("discovery error: %v", err)
	}
}
