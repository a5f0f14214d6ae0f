package abi

import (
	"encoding/json"
	"slices"
	"testing"
)

// docEvent has every field of the event document set.
var docEvent = Event{
	Header: Header{Type: "UPDATED", GVR: "apps/v1/deployments", Namespace: "prod", Name: "web", UID: "u-1", ResourceVersion: "42", Rule: "resources[0]", Initial: true},
	Object: map[string]any{
		"kind":     "Deployment",
		"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web", "a~b": "tilde"}},
		"spec":     map[string]any{"replicas": int64(3), "containers": []any{map[string]any{"image": "nginx"}}},
	},
	OldObject: map[string]any{"spec": map[string]any{"replicas": int64(2)}},
}

// TestDocumentFields pins the event document of ABI.md: its field names,
// their order in the whole document, and the value each one holds. A
// change here is a change of the ABI (and of ABI.md).
func TestDocumentFields(t *testing.T) {
	fields := []struct{ name, want string }{
		{"type", `"UPDATED"`},
		{"gvr", `"apps/v1/deployments"`},
		{"namespace", `"prod"`},
		{"name", `"web"`},
		{"uid", `"u-1"`},
		{"resource_version", `"42"`},
		{"initial", `true`},
		{"rule", `"resources[0]"`},
		{"object", `{"kind":"Deployment","metadata":{"labels":{"app.kubernetes.io/name":"web","a~b":"tilde"}},"spec":{"containers":[{"image":"nginx"}],"replicas":3}}`},
		{"old_object", `{"spec":{"replicas":2}}`},
	}
	var names []string
	whole := "{"
	for i, f := range fields {
		names = append(names, f.name)
		if i > 0 {
			whole += ","
		}
		whole += `"` + f.name + `":` + f.want
		if got := fieldJSON(t, &docEvent, "/"+f.name); got != f.want {
			t.Errorf("FieldJSON(/%s) = %s, want %s", f.name, got, f.want)
		}
	}
	if got := DocumentFields(); !slices.Equal(got, names) {
		t.Errorf("DocumentFields() = %q, want %q", got, names)
	}
	if got := fieldJSON(t, &docEvent, ""); got != whole+"}" {
		t.Errorf("whole document:\n got %s\nwant %s}", got, whole)
	}
}

func TestFieldJSON(t *testing.T) {
	added := Event{Header: Header{Type: "ADDED", Name: "web"}, Object: map[string]any{"kind": "ConfigMap"}}
	tests := []struct {
		ev      *Event
		pointer string
		want    string // JSON, "" for not found
	}{
		{&docEvent, "/object/spec/replicas", `3`},
		{&docEvent, "/object/spec/containers/0/image", `"nginx"`},
		{&docEvent, "/object/metadata/labels/app.kubernetes.io~1name", `"web"`},
		{&docEvent, "/object/metadata/labels/a~0b", `"tilde"`},
		{&docEvent, "/old_object/spec/replicas", `2`},
		{&docEvent, "/object/spec/containers/1", ""},
		{&docEvent, "/object/spec/containers/01", ""},
		{&docEvent, "/object/nope", ""},
		{&docEvent, "/type/x", ""}, // into a scalar field
		{&docEvent, "/initial/0", ""},
		{&docEvent, "/Type", ""}, // names are case-sensitive
		{&docEvent, "/nope", ""},
		{&docEvent, "/", ""},
		{&docEvent, "type", ""}, // not a pointer
		// An object the event does not have: nothing at or below it, null
		// in the whole document.
		{&added, "/old_object", ""},
		{&added, "/old_object/spec", ""},
		{&added, "/object/kind", `"ConfigMap"`},
		{&added, "", `{"type":"ADDED","gvr":"","namespace":"","name":"web","uid":"","resource_version":"","initial":false,"rule":"","object":{"kind":"ConfigMap"},"old_object":null}`},
		{&Event{}, "/object", ""},
		{&Event{}, "/name", `""`},
	}
	for _, tt := range tests {
		if got := fieldJSON(t, tt.ev, tt.pointer); got != tt.want {
			t.Errorf("%s: FieldJSON(%q) = %s, want %s", tt.ev.Type, tt.pointer, got, tt.want)
		}
	}
}

// fieldJSON is e.FieldJSON(pointer) as a string, "" for nothing.
func fieldJSON(t *testing.T, e *Event, pointer string) string {
	t.Helper()
	b, err := e.FieldJSON(pointer)
	if err != nil {
		t.Fatalf("FieldJSON(%q): %v", pointer, err)
	}
	if b != nil && !json.Valid(b) {
		t.Fatalf("FieldJSON(%q) = %q, not JSON", pointer, b)
	}
	return string(b)
}

func BenchmarkFieldJSON(b *testing.B) {
	for _, pointer := range []string{"/object/kind", "/old_object/spec/replicas", "/type", "/initial", ""} {
		name := pointer
		if name == "" {
			name = "whole"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if v, _ := docEvent.FieldJSON(pointer); v == nil {
					b.Fatal("not found")
				}
			}
		})
	}
}
