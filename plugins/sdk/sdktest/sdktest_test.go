package sdktest

import (
	"encoding/json"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// TestGetFieldDocument checks that the harness serves every field of the
// event document that package abi defines (its test pins them), as abi
// resolves it, like the host's get_field: neither has a field list of its
// own.
func TestGetFieldDocument(t *testing.T) {
	ev := Event{
		Header:    abi.Header{Type: "UPDATED", GVR: "v1/configmaps", Namespace: "ns", Name: "n", UID: "u", ResourceVersion: "7", Rule: "r", Initial: true},
		Object:    Object(`{"data":{"a":"2"}}`),
		OldObject: Object(`{"data":{"a":"1"}}`),
	}
	c := &call{ev: ev}
	b, ok := c.GetField("")
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(b, &whole); !ok || err != nil {
		t.Fatalf(`GetField("") = %s, %v: %v`, b, ok, err)
	}
	fields := abi.DocumentFields()
	if len(whole) != len(fields) {
		t.Errorf(`GetField("") has %d fields, abi.DocumentFields %d: %q`, len(whole), len(fields), fields)
	}
	for _, name := range fields {
		want, err := ev.FieldJSON("/" + name)
		if want == nil || err != nil {
			t.Fatalf("abi: FieldJSON(/%s) = %s, %v", name, want, err)
		}
		if got, ok := c.GetField("/" + name); !ok || string(got) != string(want) || string(whole[name]) != string(want) {
			t.Errorf("GetField(/%s) = %s, %v, in the whole document %s, want %s", name, got, ok, whole[name], want)
		}
	}
	for _, pointer := range []string{"/nope", "/type/x", "object", "/object/nope"} {
		if got, ok := c.GetField(pointer); ok {
			t.Errorf("GetField(%q) = %s, want nothing", pointer, got)
		}
	}
	c.ev.OldObject = nil
	if got, ok := c.GetField("/old_object"); ok {
		t.Errorf("GetField(/old_object) without an old object = %s", got)
	}
}
