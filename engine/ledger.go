package engine

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unique"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
	"github.com/faro-dev/faro/rules"
)

// The delivery ledger is the one record of what Faro told its rules about
// each object of a resource. Every event from every watch of the resource
// passes admit, which compares it with the newest state already queued for
// the object and turns it into what the rules must hear: nothing (a
// duplicate from overlapping watches, a relist, a replay), the event, or a
// DELETED of an object that was replaced under the same name followed by the
// ADDED of its successor. Admission and queueing happen under one lock, so
// the per-object queue holds events in the order they were admitted.

// entry is what the ledger knows of the object at one place.
type entry struct {
	place string // its place key
	next  *entry // in places, the next entry whose key hashes alike
	uid   types.UID
	// rv is the resource version of the newest admitted state; 0 when it is
	// not an integer.
	rv uint64
	// last is that state, shared with the informer's cache (the ledger
	// holds no copy). It is nil for an entry resumed from the checkpoint
	// until a watch sees the object again.
	last *object.Object
	// deleted marks a tombstone: the object's deletion was admitted while
	// watches overlap, and late events of a lagging watch must not bring
	// it back.
	deleted bool
	// gone marks an entry no longer in the ledger (see hinted).
	gone bool
	// partial is last.Partial(), kept here so that replacing last does
	// not read the object it replaces.
	partial bool
}

// setLast makes o the newest state of e, and notes e on o, so that the
// UPDATED that follows o finds it without a lookup (hinted). Called with
// l.mu held.
func (l *resourceLedger) setLast(e *entry, o *object.Object) {
	if e.partial {
		l.partial--
	}
	e.partial = o.Partial()
	if e.partial {
		l.partial++
	}
	e.last = o
	o.SetOwner(e)
}

// hinted returns the entry old was noted on (setLast), while that entry is
// in the ledger: it is then the entry at old's place. An informer's previous
// state of an object, and the state it reports deleted, passed admission
// and was noted, so reaching the entry through it spares the one
// cache-missing map lookup of the admission step, also while two watches
// overlap. Called with l.mu held.
func hinted(old *object.Object) *entry {
	if old == nil {
		return nil
	}
	if e, ok := old.Owner().(*entry); ok && !e.gone {
		return e
	}
	return nil
}

// drop forgets the entry e. Called with l.mu held.
func (l *resourceLedger) drop(e *entry) {
	l.entries.remove(e)
	e.gone = true
	if e.partial {
		l.partial--
	}
}

// noRules is the rule list of an event no rule hears of.
var noRules = []*rules.Rule{}

// maxTombstones bounds the tombstones a resource keeps while its watches
// overlap (a replacement that cannot list keeps the overlap open).
const maxTombstones = 10_000

// resourceLedger is the ledger of one resource.
type resourceLedger struct {
	gvr    schema.GroupVersionResource
	gvrKey unique.Handle[schema.GroupVersionResource] // gvr interned, for queue keys
	kind   string
	isNS   bool
	push   func(*delivery) // the per-object queue
	warn   func(msg string, args ...any)

	forgotten atomic.Bool // no rule watches the resource any more

	mu      sync.Mutex
	entries places
	// rules are the rules bound to the resource; every delivery carries
	// the rules bound when it was admitted. Replaced whole, never mutated.
	rules []*rules.Rule
	// Bodies (see bind): partial counts the entries whose newest state is
	// Partial; partialWatch is set while a watch of the resource caches
	// metadata only. held are the rules that read bodies and wait for the
	// end of both to be bound, when rules becomes full.
	partial      int
	partialWatch bool
	held, full   []*rules.Rule
	// since: until the resource's watches have listed once, an object
	// first listed with a higher resource version appeared after Faro knew
	// the resource (created while Faro was down, or after its CRD was
	// established): its ADDED is not initial. 0 means every listed object
	// is initial.
	since uint64
	// resumed returns the last delivered state of an object from the
	// checkpoint; nil when nothing was resumed.
	resumed func(uid types.UID) *object.Object
	// The record's binding (see Binding): origin is its Since; told are
	// the Keys of the rules told of every object, and informing counts,
	// per rule Key, the initial ADDEDs still in flight to a rule new to
	// the resource. save keeps the binding in the checkpoint (nil without
	// one).
	origin    uint64
	told      map[string]bool
	informing map[string]int
	save      func(*Binding)
	// overlap is set while a replaced watch still runs beside its
	// successor: deletions are then kept as tombstones (oldest first in
	// tombs, at most maxTombstones).
	overlap bool
	tombs   []*entry
	// src and srcRV are the informer and version of the event being
	// admitted: what it delivers is stamped with them.
	src          *informer
	srcRV        uint64
	warnedNonInt bool
	warnedTombs  bool
}

func newResourceLedger(gvr schema.GroupVersionResource, kind string, push func(*delivery), warn func(string, ...any)) *resourceLedger {
	return &resourceLedger{gvr: gvr, gvrKey: unique.Make(gvr), kind: kind, isNS: isNamespaceResource(gvr), push: push, warn: warn, entries: newPlaces()}
}

// admit passes one event of informer src through the ledger. old is the
// informer's previous state on UPDATED; initial marks an ADDED from a
// watch's initial list.
func (l *resourceLedger) admit(src *informer, typ config.EventType, obj, old *object.Object, initial bool) {
	k, uid := nsName{obj.Namespace, obj.Name}, obj.UID
	rv, isInt := obj.RV()
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.release() // this event may give the last body held rules wait for
	if src != nil {
		l.src, l.srcRV = src, rv
		// Seen once what it gives is queued, so that the informer's mark
		// never passes an event not yet counted as pending.
		defer func() { src.marks.saw(rv); l.src, l.srcRV = nil, 0 }()
	}
	if !isInt && !l.warnedNonInt {
		l.warnedNonInt = true
		l.warn("resource versions are not integers; events of this resource cannot be ordered and are delivered as new",
			"gvr", gvrString(l.gvr), "resource_version", obj.ResourceVersion)
	}
	e := hinted(old)
	if e == nil && typ == config.Deleted {
		// The informer reports a deletion with its cached state, which
		// is usually the one the ledger holds.
		e = hinted(obj)
	}
	if e == nil {
		var buf [128]byte // the place key only while it is looked up
		e = l.entries.get(appendPlace(buf[:0], k))
	}
	switch {
	case e == nil:
		if typ == config.Deleted {
			return // never delivered
		}
		l.add(k, obj, rv, initial)
	case e.uid == uid && !e.deleted && typ == config.Deleted:
		// A deletion is final whatever the version (a relist reports it
		// with the last state the watch knew).
		l.remove(e, rv)
		l.deliver(delivery{typ: config.Deleted, obj: obj})
	case isInt && e.rv != 0 && rv <= e.rv:
		// Already admitted, or older than what was. The same state from
		// another watch's cache takes the place of the one held, so that a
		// stopped watch's cache is not kept alive through the ledger.
		if e.uid == uid && rv == e.rv && !e.deleted {
			l.setLast(e, obj)
		}
	case e.uid == uid:
		switch {
		case e.deleted:
			// Gone: a lagging watch's news of it is stale.
		case !isInt && e.last != nil && e.last.ResourceVersion == obj.ResourceVersion:
			l.setLast(e, obj)
		default:
			prev := l.lastState(k, e)
			e.rv = rv
			l.setLast(e, obj)
			l.deliver(delivery{typ: config.Updated, obj: obj, old: prev})
		}
	case e.deleted:
		// A new object where a deleted one stood.
		if typ != config.Deleted {
			l.dropTomb(e)
			l.add(k, obj, rv, initial)
		}
	case typ == config.Deleted:
		// The deletion of an object never delivered under this name.
	default:
		// Another object under the same name, newer than the one the rules
		// know: that one was deleted (the informer saw a re-create as an
		// update, e.g. across a relist).
		gone := l.lastState(k, e)
		if old != nil && old.UID == e.uid {
			gone = old
		}
		l.drop(e)
		l.deliver(delivery{typ: config.Deleted, obj: gone})
		l.add(k, obj, rv, initial)
	}
}

// add records a new object and delivers its ADDED. Called with l.mu held.
func (l *resourceLedger) add(k nsName, obj *object.Object, rv uint64, initial bool) {
	e := &entry{place: placeKey(k), uid: obj.UID, rv: rv}
	l.setLast(e, obj)
	l.entries.add(e)
	l.deliver(delivery{typ: config.Added, obj: obj, initial: initial && (l.since == 0 || rv <= l.since)})
}

// remove forgets a deleted object, or keeps it as a tombstone while watches
// overlap. Called with l.mu held.
func (l *resourceLedger) remove(e *entry, rv uint64) {
	if !l.overlap {
		l.drop(e)
		return
	}
	e.deleted, e.rv = true, max(e.rv, rv)
	l.tombs = append(l.tombs, e)
	if len(l.tombs) <= maxTombstones {
		return
	}
	oldest := l.tombs[0]
	l.tombs = l.tombs[1:]
	if !oldest.gone {
		l.drop(oldest)
	}
	if !l.warnedTombs {
		l.warnedTombs = true
		l.warn("watch replacement is taking long; forgetting the oldest deletions (a lagging watch may report one again)",
			"gvr", gvrString(l.gvr), "kept", maxTombstones)
	}
}

// dropTomb removes the tombstone e. Called with l.mu held.
func (l *resourceLedger) dropTomb(e *entry) {
	l.drop(e)
	for i, t := range l.tombs {
		if t == e {
			l.tombs = append(l.tombs[:i], l.tombs[i+1:]...)
			break
		}
	}
}

// lastState returns the newest admitted state of the entry at k: held,
// resumed from the checkpoint, or (when neither has it) its identity alone.
func (l *resourceLedger) lastState(k nsName, e *entry) *object.Object {
	if e.last != nil {
		return e.last
	}
	if l.resumed != nil {
		if u := l.resumed(e.uid); u != nil {
			return u
		}
	}
	rv := ""
	if e.rv != 0 {
		rv = strconv.FormatUint(e.rv, 10)
	}
	return object.Identity(l.gvr.GroupVersion().String(), l.kind, k.namespace, k.name, e.uid, rv)
}

// deliver queues ev for the rules bound now, in a recycled delivery
// record. Called with l.mu held.
func (l *resourceLedger) deliver(ev delivery) {
	d := deliveries.Get().(*delivery)
	// Field by field: a recycled record is zero, and copying ev whole
	// would also write its zero fields, through the bulk write barrier
	// while the GC marks.
	d.typ, d.obj, d.old, d.initial, d.rules, d.informs = ev.typ, ev.obj, ev.old, ev.initial, ev.rules, ev.informs
	if d.rules == nil {
		d.rules = l.rules
	}
	d.ledger = l
	d.src, d.rv = l.src, l.srcRV
	l.push(d)
}

// setOverlap says whether watches of the resource overlap.
func (l *resourceLedger) setOverlap(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.overlap = on
}

// listedScope is one synced watch as the sweep sees it.
type listedScope struct {
	namespace string
	selector  labels.Selector
	// get returns the object at a place in the watch's cache, nil if none.
	get func(nsName) *object.Object
	// listed is the resource version the watch's cache is complete up to;
	// 0 when it is not an integer.
	listed uint64
}

func (sc listedScope) covers(k nsName, last *object.Object) bool {
	if sc.namespace != "" && k.namespace != sc.namespace {
		return false
	}
	return last == nil || sc.selector.Matches(last.LabelSet())
}

// sweep reconciles the ledger with the watches of the resource once all of
// them have listed: entries no watch covers any more are forgotten, entries
// a covering watch's cache lacks although it is complete past their version
// are reported DELETED (deleted while a replaced watch lagged, or while Faro
// was down), and tombstones are no longer needed.
func (l *resourceLedger) sweep(scopes []listedScope) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for e := range l.entries.all() {
		k := placeOf(e.place)
		if e.deleted {
			l.drop(e)
			continue
		}
		i := slices.IndexFunc(scopes, func(sc listedScope) bool { return sc.covers(k, e.last) })
		var cached *object.Object
		if i >= 0 {
			cached = scopes[i].get(k)
		}
		switch {
		case i < 0:
			// Out of every watch's scope: no rule hears of it. With a
			// checkpoint, a DELETED for no rule, queued behind the
			// object's events, removes it there too, so that a scope
			// widened again after a restart reports it as initial, as it
			// would now.
			l.drop(e)
			if l.save != nil {
				l.deliver(delivery{typ: config.Deleted, rules: noRules,
					obj: object.Identity(l.gvr.GroupVersion().String(), l.kind, k.namespace, k.name, e.uid, "")})
			}
		case cached != nil:
			// The state held is taken from the covering cache when it is
			// the same version: no stopped watch's cache stays referenced
			// through the ledger, and a partial state gives way to a whole
			// one (or a whole to a partial one, when bodies are no longer
			// read), which releases rules held for bodies (see bind).
			if cached.UID == e.uid && sameState(cached, e) {
				l.setLast(e, cached)
			}
		case e.rv != 0 && scopes[i].listed != 0 && e.rv > scopes[i].listed:
			// Newer than what the watch has seen: it reports it itself.
		default:
			gone := l.lastState(k, e)
			l.drop(e)
			l.deliver(delivery{typ: config.Deleted, obj: gone})
		}
	}
	l.overlap, l.tombs, l.warnedTombs = false, nil, false
	l.release()
}

// sameState reports whether o is the state the entry e admitted last.
func sameState(o *object.Object, e *entry) bool {
	if rv, ok := o.RV(); ok && e.rv != 0 {
		return rv == e.rv
	}
	return e.last != nil && e.last.ResourceVersion == o.ResourceVersion
}
