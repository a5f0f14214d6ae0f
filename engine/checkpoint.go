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
	// Forget drops a resource no rule watches any more.
	Forget(gvr schema.GroupVersionResource)
}

// Mark is one delivered state: an object's, or its deletion.
type Mark struct {
	Object  *object.Object
	Deleted bool
}

// Resumed is what a Checkpoint knew of a resource at start.
type Resumed struct {
	Objects []ResumedObject
	// MaxRV is the highest resource version delivered: objects listed with
	// a higher one appeared while Faro was down.
	MaxRV uint64
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
