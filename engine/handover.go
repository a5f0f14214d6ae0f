package engine

import (
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
)

// Replacing a watch (a reload changed a resource's namespaces or server-side
// selector) must neither lose nor repeat events for the rules that keep
// watching it. The new watch starts while the old ones keep delivering; it
// only records what it sees. Once its initial list is through its handler,
// the old watches are stopped and what they delivered is compared with what
// the new one has seen; the difference is delivered (an update the old
// watch had not passed on, an object created or deleted in between), and
// events the new watch has yet to pass on that the old ones already
// delivered are skipped (floors). Rules new to the resource get initial
// ADDED events for every object at that moment.

// view is what one watch knows: the last state of each object its handler
// saw, and the objects it saw deleted while a replacement was under way.
type view struct {
	objects map[types.UID]*unstructured.Unstructured
	deleted map[types.UID]*unstructured.Unstructured
}

func newView() view {
	return view{objects: map[types.UID]*unstructured.Unstructured{}, deleted: map[types.UID]*unstructured.Unstructured{}}
}

// floor marks an object whose events up to a resource version the old
// watches already delivered; deleted marks that its deletion was delivered.
type floor struct {
	rv      uint64
	deleted bool
}

// rvOf parses a resource version; etcd's are integers. An unparsable one is
// 0, which makes comparisons err on the side of delivering.
func rvOf(u *unstructured.Unstructured) uint64 {
	n, _ := strconv.ParseUint(u.GetResourceVersion(), 10, 64)
	return n
}

// inScope reports whether u is one a watch on namespace ns with selector
// sel would see.
func inScope(u *unstructured.Unstructured, ns string, sel labels.Selector) bool {
	return (ns == "" || u.GetNamespace() == ns) && sel.Matches(labels.Set(u.GetLabels()))
}

// takeOver computes, for a new watch whose handler has seen cur (its view),
// what the rules that saw the old watches (whose final views are old) must
// still be told, and which of the new watch's later events to skip.
func takeOver(old, cur view) (send []*delivery, floors map[types.UID]floor) {
	floors = map[types.UID]floor{}
	for uid, n := range cur.objects {
		o, seen := old.objects[uid]
		switch {
		case seen && o.GetResourceVersion() == n.GetResourceVersion():
		case seen && rvOf(n) > rvOf(o):
			send = append(send, &delivery{typ: config.Updated, obj: n, old: o, audience: carriedRules})
		case seen:
			floors[uid] = floor{rv: rvOf(o)} // the new watch lags: skip what was delivered
		case old.deleted[uid] != nil && rvOf(old.deleted[uid]) >= rvOf(n):
			floors[uid] = floor{rv: rvOf(old.deleted[uid]), deleted: true}
		default:
			send = append(send, &delivery{typ: config.Added, obj: n, audience: carriedRules})
		}
	}
	for uid, o := range old.objects {
		if _, ok := cur.objects[uid]; ok {
			continue
		}
		if d := cur.deleted[uid]; d != nil {
			send = append(send, &delivery{typ: config.Deleted, obj: d, audience: carriedRules})
		} else {
			floors[uid] = floor{rv: rvOf(o)} // created late: the new watch has yet to see it
		}
	}
	return send, floors
}

// skip reports whether an event of the new watch was already delivered by
// the old ones, and clears the floor once it is passed.
func (w *watch) skip(typ config.EventType, u *unstructured.Unstructured) bool {
	f, ok := w.floors[u.GetUID()]
	if !ok {
		return false
	}
	if typ == config.Deleted {
		delete(w.floors, u.GetUID())
		return f.deleted
	}
	if rvOf(u) <= f.rv {
		return true
	}
	delete(w.floors, u.GetUID())
	return false
}
