package abi

import (
	"bytes"
	"encoding/json"
)

// The event document is the event as the one JSON object that get_field
// pointers address (ABI.md, "The event document"):
//
//	{"type": …, "gvr": …, "namespace": …, "name": …, "uid": …,
//	 "resource_version": …, "initial": …, "rule": …, "object": {…}, "old_object": {…}}
//
// docFields is its only definition, in that order: the host's get_field
// and the native harness (sdktest) both answer with Event.FieldJSON, so a
// field added here is served by both.
var docFields = [...]struct {
	name string
	// ptr points to the field's value in e: a *string or *bool, or a
	// *map[string]any, an object, absent when the map is nil. A pointer
	// marshals as what it points to, without boxing a copy.
	ptr func(e *Event) any
}{
	{"type", func(e *Event) any { return &e.Type }},
	{"gvr", func(e *Event) any { return &e.GVR }},
	{"namespace", func(e *Event) any { return &e.Namespace }},
	{"name", func(e *Event) any { return &e.Name }},
	{"uid", func(e *Event) any { return &e.UID }},
	{"resource_version", func(e *Event) any { return &e.ResourceVersion }},
	{"initial", func(e *Event) any { return &e.Initial }},
	{"rule", func(e *Event) any { return &e.Rule }},
	{"object", func(e *Event) any { return &e.Object }},
	{"old_object", func(e *Event) any { return &e.OldObject }},
}

// DocumentFields returns the names of the event document's top-level
// fields, in the order of its JSON form.
func DocumentFields() []string {
	names := make([]string, len(docFields))
	for i, f := range docFields {
		names[i] = f.name
	}
	return names
}

// FieldJSON is get_field's answer: the JSON of the value an RFC 6901
// pointer names in the event document, nil (and a nil error) if there is
// none. The empty pointer is the whole document. A pointer finds nothing
// when it is not one, names an unknown field or a part of a scalar field,
// or leads to or into an object the event does not have (old_object
// outside UPDATED), which the whole document shows as null. It is the
// host's get_field path: parts of the objects are found in their decoded
// form and only they are encoded; a pointer without ~ escapes allocates
// nothing but the answer. The error is json.Marshal's, for values that did
// not come from JSON.
func (e *Event) FieldJSON(pointer string) ([]byte, error) {
	if pointer == "" {
		return e.appendDocument(make([]byte, 0, 512))
	}
	first, rest, ok := splitPointer(pointer)
	if !ok {
		return nil, nil
	}
	for i := range docFields {
		if docFields[i].name != first {
			continue
		}
		p := docFields[i].ptr(e)
		if obj, isObj := p.(*map[string]any); isObj {
			v, ok := lookupDoc(*obj, rest)
			if !ok {
				return nil, nil
			}
			return json.Marshal(v)
		}
		if rest != "" {
			return nil, nil // no part of a scalar
		}
		return json.Marshal(p)
	}
	return nil, nil
}

// appendDocument appends the whole event document to b: one JSON object,
// docFields' names in order.
func (e *Event) appendDocument(b []byte) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf) // one encoder for all fields, writing in place
	buf.WriteByte('{')
	for i, f := range docFields {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('"')
		buf.WriteString(f.name)
		buf.WriteString(`":`)
		if err := enc.Encode(f.ptr(e)); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
