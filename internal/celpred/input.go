package celpred

import (
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Input is the activation of one event, shared by every entry that evaluates
// the event, from any number of goroutines: object, oldObject and eventType,
// converted into CEL values at most once (lazily, see values.go), and
// changedPaths.
type Input struct {
	eventType ref.Val
	object    ref.Val
	oldObject ref.Val

	rawObject, rawOld map[string]any

	// fits: object and oldObject fit in the cost model (see cost.go),
	// measured on first use.
	fitsOnce sync.Once
	fits     bool

	changedOnce sync.Once
	changed     ref.Val
	changedFits bool
}

// NewInput prepares an event for evaluation. object and oldObject are
// unstructured contents (unstructured.Unstructured.Object); oldObject is nil
// unless eventType is UPDATED (it is ignored otherwise). Neither map is
// copied or modified, and the caller must not modify them while the Input is
// in use.
//
// Each map and list of the objects is converted into a CEL value at most once
// per Input, on first access by any entry, and then shared (see values.go);
// changedPaths is computed on first use, at most once.
func NewInput(eventType string, object, oldObject map[string]any) *Input {
	in := &Input{
		eventType: types.String(eventType),
		object:    types.NullValue,
		oldObject: types.NullValue,
		rawObject: object,
	}
	if object != nil {
		in.object = toVal(object)
	}
	if eventType == eventUpdated && oldObject != nil {
		in.rawOld = oldObject
		in.oldObject = toVal(oldObject)
	}
	return in
}

// fitsModel reports whether object and oldObject fit in the cost model.
func (in *Input) fitsModel() bool {
	in.fitsOnce.Do(func() {
		var st sizeStats
		if in.rawObject != nil {
			measure(in.rawObject, &st)
		}
		if in.rawOld != nil {
			measure(in.rawOld, &st)
		}
		in.fits = st.fits()
	})
	return in.fits
}

// eventUpdated is the only event type with an oldObject.
const eventUpdated = "UPDATED"

// changedPaths returns the changedPaths value, computing it on first use,
// and whether it fits in the cost model.
func (in *Input) changedPaths() (ref.Val, bool) {
	in.changedOnce.Do(func() {
		if in.rawOld == nil || in.rawObject == nil {
			in.changed, in.changedFits = emptyList, true
			return
		}
		paths := diffPaths(in.rawOld, in.rawObject)
		st := sizeStats{maxCollection: len(paths)}
		l := make([]ref.Val, len(paths))
		for i, p := range paths {
			st.maxString = max(st.maxString, len(p))
			l[i] = types.String(p)
		}
		in.changed = types.NewRefValList(types.DefaultTypeAdapter, l)
		in.changedFits = st.fits()
	})
	return in.changed, in.changedFits
}

var emptyList = types.NewRefValList(types.DefaultTypeAdapter, []ref.Val{})

// inputActivation is Input seen as a cel-go activation; the conversion is
// free, and keeps ResolveName out of Input's API.
type inputActivation Input

func (a *inputActivation) ResolveName(name string) (any, bool) {
	switch name {
	case varObject:
		return a.object, true
	case varOldObject:
		return a.oldObject, true
	case varEventType:
		return a.eventType, true
	case varChangedPaths:
		v, _ := (*Input)(a).changedPaths()
		return v, true
	case varVariables:
		return noVariables, true
	}
	return nil, false
}

func (a *inputActivation) Parent() interpreter.Activation { return nil }
