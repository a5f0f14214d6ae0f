package wasmhost

import (
	"encoding/json"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

func TestField(t *testing.T) {
	cs := &callState{ev: &Event{
		Header: abi.Header{Type: "UPDATED", Name: "n"},
		Object: map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web", "a~b": "tilde"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"image": "nginx"}}, "replicas": int64(3)},
		},
	}}
	tests := []struct{ pointer, want string }{
		{"/object/spec/replicas", `3`},
		{"/object/spec/containers/0/image", `"nginx"`},
		{"/object/metadata/labels/app.kubernetes.io~1name", `"web"`},
		{"/object/metadata/labels/a~0b", `"tilde"`},
		{"/name", `"n"`},
		{"/initial", `false`},
		{"/object/spec/containers/1", ""},
		{"/object/spec/containers/01", ""},
		{"/object/nope", ""},
		{"/old_object", ""}, // no old object
		{"/nope", ""},
		{"object", ""},
	}
	for _, tt := range tests {
		if got := string(cs.field(tt.pointer)); got != tt.want {
			t.Errorf("field(%q) = %q, want %q", tt.pointer, got, tt.want)
		}
	}
	var whole map[string]any
	if err := json.Unmarshal(cs.field(""), &whole); err != nil || whole["type"] != "UPDATED" || whole["object"] == nil || whole["old_object"] != nil {
		t.Errorf(`field("") = %v, %v`, whole, err)
	}
}

// TestFieldDocument checks that get_field serves every field of the event
// document that package abi defines (its test pins them), as abi resolves
// it: the host has no field list of its own.
func TestFieldDocument(t *testing.T) {
	ev := &Event{
		Header:    abi.Header{Type: "UPDATED", GVR: "v1/configmaps", Namespace: "ns", Name: "n", UID: "u", ResourceVersion: "7", Rule: "r", Initial: true},
		Object:    map[string]any{"data": map[string]any{"a": "2"}},
		OldObject: map[string]any{"data": map[string]any{"a": "1"}},
	}
	cs := &callState{ev: ev}
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(cs.field(""), &whole); err != nil {
		t.Fatal(err)
	}
	fields := abi.DocumentFields()
	if len(whole) != len(fields) {
		t.Errorf(`field("") has %d fields, abi.DocumentFields %d: %q`, len(whole), len(fields), fields)
	}
	for _, name := range fields {
		want, err := ev.FieldJSON("/" + name)
		if want == nil || err != nil {
			t.Fatalf("abi: FieldJSON(/%s) = %s, %v", name, want, err)
		}
		if got := cs.field("/" + name); string(got) != string(want) || string(whole[name]) != string(want) {
			t.Errorf("field(/%s) = %s, in the whole document %s, want %s", name, got, whole[name], want)
		}
	}
}

// BenchmarkField is the host side of one get_field: resolving the pointer
// in the event document and encoding the value.
func BenchmarkField(b *testing.B) {
	cs := &callState{ev: &Event{
		Header: abi.Header{Type: "UPDATED", GVR: "apps/v1/deployments", Namespace: "prod", Name: "web", UID: "6a0f", ResourceVersion: "12346", Rule: "prod"},
		Object: map[string]any{
			"kind":     "Deployment",
			"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web"}},
			"spec":     map[string]any{"replicas": int64(3)},
		},
		OldObject: map[string]any{"kind": "Deployment"},
	}}
	for _, pointer := range []string{"/object/kind", "/object/metadata/labels/app.kubernetes.io~1name", "/old_object/kind", "/type", "/initial", ""} {
		name := pointer
		if name == "" {
			name = "whole"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if cs.field(pointer) == nil {
					b.Fatal("not found")
				}
			}
		})
	}
}
