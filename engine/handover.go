package engine

import (
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
)

// Replacing a watch (a reload changed a resource's namespaces or server-side
// selector) must neither lose nor repeat events for the rules that keep
// watching it. The new watch starts while the old ones keep delivering (to
// those rules only); it records what it sees without delivering. Once its
// initial list is through its handler, the old watches are stopped and what
// they delivered is compared with what the new one has seen: the difference
// is delivered (an update the old watch had not passed on, an object created
// or deleted in between), and events the new watch has yet to pass on that
// the old ones already delivered are skipped (floors). Rules new to the
// resource then get an initial ADDED for every object, in the state the
// others were last told.

// view is what one watch knows: the last state of each object it delivered
// (or, before it is live, saw), and the objects it saw deleted while a
// replacement was under way.
type view struct {
	objects map[types.UID]*unstructured.Unstructured
	deleted map[types.UID]*unstructured.Unstructured
	// maxRV is the highest resource version seen: an object older than it
	// that the watch does not know was deleted before the watch listed.
	maxRV uint64
}

func newView() view {
	return view{objects: map[types.UID]*unstructured.Unstructured{}, deleted: map[types.UID]*unstructured.Unstructured{}}
}

// keep records u in v unless v holds a newer state of it.
func (v *view) keep(u *unstructured.Unstructured) {
	if cur, ok := v.objects[u.GetUID()]; !ok || newer(u, cur) {
		v.objects[u.GetUID()] = u
	}
	if rv, ok := rvOf(u); ok && rv > v.maxRV {
		v.maxRV = rv
	}
}

// floor marks an object whose events up to resource version rv the old
// watches already delivered (exact marks a version that is not an integer,
// compared as a string); deleted marks that its deletion was delivered.
type floor struct {
	rv      uint64
	exact   string
	deleted bool
}

// rvOf parses a resource version; etcd's are integers.
func rvOf(u *unstructured.Unstructured) (uint64, bool) {
	n, err := strconv.ParseUint(u.GetResourceVersion(), 10, 64)
	return n, err == nil
}

// newer reports whether a is a later state than b. Resource versions that
// are not integers cannot be ordered: any difference counts as newer, which
// errs on the side of delivering.
func newer(a, b *unstructured.Unstructured) bool {
	ra, okA := rvOf(a)
	rb, okB := rvOf(b)
	if okA && okB {
		return ra > rb
	}
	return a.GetResourceVersion() != b.GetResourceVersion()
}

func floorAt(u *unstructured.Unstructured, deleted bool) floor {
	if rv, ok := rvOf(u); ok {
		return floor{rv: rv, deleted: deleted}
	}
	return floor{exact: u.GetResourceVersion(), deleted: deleted}
}

// takeOver computes, for a new watch whose handler has seen cur, what the
// rules that saw the old watches (whose final views are old) must still be
// told, which of the new watch's later events to skip, and final: the state
// of every object as those rules now know it.
func takeOver(old, cur view) (send []*delivery, floors map[types.UID]floor, final view) {
	floors, final = map[types.UID]floor{}, newView()
	// Deletions first: an object deleted and re-created under the same name
	// must be reported in that order.
	for uid, o := range old.objects {
		if _, ok := cur.objects[uid]; ok {
			continue
		}
		rv, ok := rvOf(o)
		switch {
		case cur.deleted[uid] != nil:
			send = append(send, &delivery{typ: config.Deleted, obj: cur.deleted[uid], audience: carriedRules})
		case ok && rv <= cur.maxRV:
			// Gone before the new watch listed: it will never hear of it.
			send = append(send, &delivery{typ: config.Deleted, obj: o, audience: carriedRules})
		default:
			// Created after the new watch listed: skip its ADDED.
			floors[uid] = floorAt(o, false)
			final.keep(o)
		}
	}
	for uid, n := range cur.objects {
		o, seen := old.objects[uid]
		switch {
		case seen && o.GetResourceVersion() == n.GetResourceVersion():
			final.keep(n)
		case seen && newer(n, o):
			send = append(send, &delivery{typ: config.Updated, obj: n, old: o, audience: carriedRules})
			final.keep(n)
		case seen:
			floors[uid] = floorAt(o, false) // the new watch lags: skip what was delivered
			final.keep(o)
		case old.deleted[uid] != nil && !newer(n, old.deleted[uid]):
			floors[uid] = floorAt(old.deleted[uid], true) // its deletion was delivered
		default:
			send = append(send, &delivery{typ: config.Added, obj: n, audience: carriedRules})
			final.keep(n)
		}
	}
	final.maxRV = max(old.maxRV, cur.maxRV)
	return send, floors, final
}

// skip reports whether an event of the new watch was already delivered by
// the old ones, and clears the floor once it is passed.
func (w *watch) skip(typ config.EventType, u *unstructured.Unstructured) bool {
	uid := u.GetUID()
	f, ok := w.floors[uid]
	switch {
	case !ok:
		return false
	case f.deleted:
		// The old watch delivered its deletion: nothing of it is news.
		if typ == config.Deleted {
			delete(w.floors, uid)
		}
		return true
	case typ == config.Deleted:
		delete(w.floors, uid)
		return false
	}
	if f.exact != "" && u.GetResourceVersion() == f.exact {
		return true
	}
	if rv, ok := rvOf(u); f.exact == "" && ok && rv <= f.rv {
		return true
	}
	delete(w.floors, uid)
	return false
}
