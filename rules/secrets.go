package rules

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/internal/object"
)

// Redacted is what a Secret's values become in the objects an entry sees
// unless it says `secrets: reveal`.
const Redacted = "<redacted>"

// IsSecret reports whether o is a core v1 Secret.
func IsSecret(o *unstructured.Unstructured) bool {
	return o != nil && o.GetKind() == "Secret" && o.GetAPIVersion() == "v1"
}

// Redact returns o with every value of a Secret's data and stringData
// replaced by Redacted (keys are kept) and its last-applied-configuration
// annotation, which repeats them, redacted too. Other objects are returned
// as they are. o is not modified: the copy shares every field Redact does
// not replace, so callers treat both as read-only.
func Redact(o *unstructured.Unstructured) *unstructured.Unstructured {
	if !IsSecret(o) {
		return o
	}
	out := make(map[string]any, len(o.Object))
	for k, v := range o.Object {
		out[k] = v
	}
	for _, field := range []string{"data", "stringData"} {
		if m, ok := o.Object[field].(map[string]any); ok {
			red := make(map[string]any, len(m))
			for k := range m {
				red[k] = Redacted
			}
			out[field] = red
		}
	}
	if md, ok := o.Object["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			if _, ok := ann[object.LastApplied]; ok {
				annCopy := make(map[string]any, len(ann))
				for k, v := range ann {
					annCopy[k] = v
				}
				annCopy[object.LastApplied] = Redacted
				mdCopy := make(map[string]any, len(md))
				for k, v := range md {
					mdCopy[k] = v
				}
				mdCopy["annotations"] = annCopy
				out["metadata"] = mdCopy
			}
		}
	}
	return &unstructured.Unstructured{Object: out}
}

// decode builds the map forms of the event's objects, once.
func (ev *Event) decode() error {
	if ev.decoded {
		return ev.decodeErr
	}
	ev.decoded = true
	if ev.Object.Partial() || ev.OldObject != nil && ev.OldObject.Partial() {
		// The engine caches bodies for every resource a rule reads bodies
		// of (ReadsBody): reaching this is a bug, not a state to guess from.
		ev.decodeErr = fmt.Errorf("object %s was cached without its body", ev.Object.Name)
		return ev.decodeErr
	}
	ev.obj, ev.decodeErr = ev.Object.Unstructured()
	if ev.decodeErr == nil && ev.OldObject != nil {
		ev.old, ev.decodeErr = ev.OldObject.Unstructured()
	}
	return ev.decodeErr
}

// Objects returns the object and old object of ev, decoded, as r may see
// them: as delivered when r reveals secrets or ev is not about a Secret,
// else redacted. The decoded objects and the redacted copies are made once
// per event and shared by the rules. What a rule's CEL evaluates is the
// same view, so that neither a plugin, a log line nor a CEL error message
// of an entry that does not reveal secrets can carry a Secret's values.
func (ev *Event) Objects(r *Rule) (obj, old *unstructured.Unstructured, err error) {
	if err := ev.decode(); err != nil {
		return nil, nil, err
	}
	if r.RevealSecrets || !IsSecret(ev.obj) {
		return ev.obj, ev.old, nil
	}
	if ev.redacted == nil {
		ev.redacted = Redact(ev.obj)
		if ev.old != nil {
			ev.redactedOld = Redact(ev.old)
		}
	}
	return ev.redacted, ev.redactedOld, nil
}

// celInput is the CEL input of r's view of ev, built on first use and
// shared by the rules with the same view.
func (ev *Event) celInput(r *Rule) (*celpred.Input, error) {
	obj, old, err := ev.Objects(r)
	if err != nil {
		return nil, err
	}
	in := &ev.cel
	if obj == ev.obj && IsSecret(obj) {
		in = &ev.celRevealed
	}
	if *in == nil {
		var oldMap map[string]any
		if old != nil {
			oldMap = old.Object
		}
		*in = celpred.NewInput(string(ev.Type), obj.Object, oldMap)
	}
	return *in, nil
}
