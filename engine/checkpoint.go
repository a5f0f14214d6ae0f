package engine

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/faro-dev/faro/internal/object"
)

// Checkpoint keeps the delivery ledger across restarts (state_dir).
type Checkpoint interface {
	// Resume returns what was delivered of a resource before the restart.
	Resume(gvr schema.GroupVersionResource) Resumed
	// Record notes an event whose last handler is done; it is called in
	// order per object.
	Record(gvr schema.GroupVersionResource, m Mark)
	// Bind notes what the record of a resource stands on; nil forgets the
	// resource (no rule watches it any more).
	Bind(gvr schema.GroupVersionResource, b *Binding)
}

// Mark is one delivered state: an object's, or its deletion.
type Mark struct {
	Object  *object.Object
	Deleted bool
}

// Binding is what the record of a resource stands on, besides its objects.
type Binding struct {
	// Since is the resource version up to which the record is complete:
	// where Faro's watches of the resource first listed it, then, as
	// events are delivered, up to which every event of its watches was
	// (see keepSince). An object first listed with a higher version was
	// created or changed after that (while Faro was down, or while its
	// ADDED was in flight), so its ADDED is not initial. 0 until the
	// resource's watches have listed once.
	Since uint64
	// Rules are the Keys of the rules that were told of every object
	// recorded.
	Rules []string
}

// Resumed is what a Checkpoint knew of a resource at start.
type Resumed struct {
	Objects []ResumedObject
	Binding Binding
	// Object returns the last delivered state of an object (nil when it
	// cannot be read).
	Object func(uid types.UID) *object.Object
}

// ResumedObject identifies one delivered object.
type ResumedObject struct {
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
}

// sinceEvery is how often keepSince moves the records' Since.
const sinceEvery = time.Second

// keepSince moves every listed resource's Binding.Since up to how far the
// events of its watches were delivered, every sinceEvery until ctx is done.
func (e *Engine) keepSince(ctx context.Context) {
	wait.UntilWithContext(ctx, func(context.Context) { e.advanceSince() }, sinceEvery)
}

// advanceSince moves each listed resource's Since up to the lowest mark of
// its watches (every event at or below it was delivered) and of the stopped
// ones whose events are still queued, once all of them have listed.
func (e *Engine) advanceSince() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rsc := range e.resources {
		rsc.retired = slices.DeleteFunc(rsc.retired, func(w *informer) bool { return !w.marks.busy() })
		if !rsc.listed || len(rsc.watches) == 0 {
			continue
		}
		var low uint64
		ok := true
		for _, w := range rsc.watches {
			m := w.marks.mark()
			ok = ok && w.synced.Load() && m != 0
			low = minMark(low, m)
		}
		for _, w := range rsc.retired {
			low = minMark(low, w.marks.mark())
		}
		if ok {
			rsc.ledger.advance(low)
		}
	}
}

// minMark is the lower of two marks, where 0 is none yet.
func minMark(a, b uint64) uint64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}
