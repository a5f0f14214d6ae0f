package engine

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

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
	// Since is the resource version the record starts at: an object first
	// listed with a higher one was created or changed after Faro began
	// watching the resource (while Faro was down, or while its ADDED was
	// in flight), so its ADDED is not initial. 0 until the resource's
	// watches have listed once.
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
