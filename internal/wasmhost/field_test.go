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
