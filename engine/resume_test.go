package engine

import (
	"maps"
	"slices"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
)

// memCheckpoint is a Checkpoint of one resource, in memory.
type memCheckpoint struct {
	mu      sync.Mutex
	objects map[types.UID]*object.Object
	binding *Binding
}

func newMemCheckpoint() *memCheckpoint {
	return &memCheckpoint{objects: map[types.UID]*object.Object{}}
}

func (c *memCheckpoint) Resume(schema.GroupVersionResource) Resumed {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r Resumed
	for _, o := range c.objects {
		r.Objects = append(r.Objects, ResumedObject{Namespace: o.Namespace, Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion})
	}
	if c.binding != nil {
		r.Binding = *c.binding
	}
	objects := maps.Clone(c.objects)
	r.Object = func(uid types.UID) *object.Object { return objects[uid] }
	return r
}

func (c *memCheckpoint) Record(_ schema.GroupVersionResource, m Mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Deleted {
		delete(c.objects, m.Object.UID)
	} else {
		c.objects[m.Object.UID] = m.Object
	}
}

func (c *memCheckpoint) Bind(_ schema.GroupVersionResource, b *Binding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b == nil {
		c.objects, c.binding = map[types.UID]*object.Object{}, nil
		return
	}
	c.binding = &Binding{Since: b.Since, Rules: slices.Clone(b.Rules)}
}

func (c *memCheckpoint) rules() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.binding == nil {
		return nil
	}
	return c.binding.Rules
}

// run is one run of a test engine with a checkpoint: its configmaps
// resource, whose queued events the test delivers one by one.
type run struct {
	t   *testing.T
	e   *Engine
	rsc *resource
}

func startRun(t *testing.T, cp Checkpoint) *run {
	e, _ := newTestEngine(t, newRecorder(), 0, 0)
	e.opts.Checkpoint = cp
	rsc := e.newResource(apiResource{GVR: cmGVR, Kind: "ConfigMap", Namespaced: true})
	e.resources[cmGVR] = rsc
	return &run{t: t, e: e, rsc: rsc}
}

// deliver hands the oldest queued event of the object name to its handlers'
// end (as a worker does once they are done) and describes it, with the
// number of rules it is for.
func (r *run) deliver(name string) string {
	r.t.Helper()
	o := r.e.pending.items[objKey{gvr: r.rsc.ledger.gvrKey, Namespace: "ns", Name: name}]
	if o == nil {
		r.t.Fatalf("nothing queued for %s", name)
	}
	d := r.e.pending.head(o)
	s := describeDelivery(d)
	if len(d.rules) != len(r.rsc.ledger.rules) {
		s += " (new rules)"
	}
	r.e.delivered(d)
	r.e.pending.pop(o)
	return s
}

// queued describes every event still queued, per object in order.
func (r *run) queued() []string {
	var out []string
	for _, o := range r.e.pending.items {
		for _, d := range o.events {
			out = append(out, describeDelivery(d))
		}
	}
	slices.Sort(out)
	return out
}

// TestResumeAcrossRestarts follows one resource through three runs with a
// checkpoint: where the record starts survives the restarts, an ADDED left
// undelivered at a restart is news (not initial) after it, a rule added
// while Faro was down is told of every object from the checkpoint, and
// once the first listing is over an object listed for the first time is
// initial again.
func TestResumeAcrossRestarts(t *testing.T) {
	cp := newMemCheckpoint()
	one := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n")
	two := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/configmaps, name_pattern: '.*'}\n")
	want := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}

	// Run 1: a and b listed, then c created (its ADDED still in flight at
	// the restart) and b updated (delivered).
	r := startRun(t, cp)
	r.rsc.ledger.bind(one)
	l := r.rsc.ledger
	l.admit(nil, config.Added, obj("a", "ua", "5"), nil, true)
	l.admit(nil, config.Added, obj("b", "ub", "6"), nil, true)
	l.listed(7) // the list was at 7
	l.admit(nil, config.Added, obj("c", "uc", "8"), nil, false)
	l.admit(nil, config.Updated, obj("b", "ub", "9"), obj("b", "ub", "6"), false)
	want("run 1", []string{r.deliver("a"), r.deliver("b"), r.deliver("b")},
		[]string{"ADDED a ua@5 initial", "ADDED b ub@6 initial", "UPDATED b ub@9 old=ub@6"})
	want("rules saved in run 1", cp.rules(), []string{one[0].Key})

	// Run 2, with a rule added while Faro was down: it is told of a and b
	// (as last delivered), the other rule of nothing again; the list
	// brings c as news.
	r = startRun(t, cp)
	l = r.rsc.ledger
	r.rsc.ledger.bind(two)
	want("run 2 before the list", r.queued(), []string{"ADDED a ua@5 initial", "ADDED b ub@9 initial"})
	want("rules saved while the new one is told", cp.rules(), []string{one[0].Key})
	l.admit(nil, config.Added, obj("a", "ua", "5"), nil, true)
	l.admit(nil, config.Added, obj("b", "ub", "9"), nil, true)
	l.admit(nil, config.Added, obj("c", "uc", "8"), nil, true)
	want("run 2", []string{r.deliver("a"), r.deliver("b"), r.deliver("c")},
		[]string{"ADDED a ua@5 initial (new rules)", "ADDED b ub@9 initial (new rules)", "ADDED c uc@8"})
	want("rules saved once told", cp.rules(), []string{one[0].Key, two[1].Key})
	l.listed(0)

	// Once listed, a watch that widens lists d, older than nothing the
	// record knows but never seen: initial.
	l.admit(nil, config.Added, obj("d", "ud", "20"), nil, true)
	want("widened", []string{r.deliver("d")}, []string{"ADDED d ud@20 initial"})

	// Run 3: nothing new for either rule.
	r = startRun(t, cp)
	r.rsc.ledger.bind(two)
	if q := r.queued(); len(q) != 0 {
		t.Errorf("run 3 queued %q for rules told before the restart", q)
	}
	if got := cp.binding.Since; got != 7 {
		t.Errorf("the record starts at %d, want 7 (the first run's list)", got)
	}
}

// TestSinceFollowsDelivery: a listed resource's Since moves up to the lowest
// mark of its watches: not past an event still in flight, so that an ADDED
// undelivered at a restart is news after it, and up to the newest event
// once everything was delivered.
func TestSinceFollowsDelivery(t *testing.T) {
	cp := newMemCheckpoint()
	r := startRun(t, cp)
	r.rsc.ledger.bind(compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n"))
	w := &informer{key: watchKey{GVR: cmGVR, Namespace: "ns"}}
	w.synced.Store(true)
	r.rsc.watches[w.key] = w
	l := r.rsc.ledger
	l.admit(w, config.Added, obj("a", "ua", "5"), nil, true)
	l.admit(w, config.Added, obj("b", "ub", "6"), nil, true)
	w.marks.saw(7) // its list
	r.rsc.desired = map[watchKey]bool{w.key: true}
	w.listed.Store(7)
	r.e.listed(r.rsc)
	r.deliver("a")
	r.deliver("b")
	l.admit(w, config.Added, obj("c", "uc", "8"), nil, false)
	l.admit(w, config.Updated, obj("b", "ub", "9"), obj("b", "ub", "6"), false)
	r.deliver("b")
	since := func() uint64 {
		r.e.advanceSince()
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return cp.binding.Since
	}
	if got := since(); got != 7 {
		t.Errorf("Since %d with c@8 in flight, want 7", got)
	}
	r.deliver("c")
	if got := since(); got != 9 {
		t.Errorf("Since %d once all was delivered, want 9", got)
	}

	// A replaced watch stops with an event still queued: until that is
	// delivered it bounds Since, although its successor saw more.
	w.cancel, w.done = func() {}, make(chan struct{})
	close(w.done)
	next := &informer{key: watchKey{GVR: cmGVR, Namespace: "ns", Bodies: true}}
	next.synced.Store(true)
	r.rsc.watches[next.key] = next
	l.admit(w, config.Updated, obj("c", "uc", "10"), obj("c", "uc", "8"), false)
	next.marks.saw(12)
	r.e.stopInformer(r.rsc, w)
	if got := since(); got != 9 {
		t.Errorf("Since %d with the stopped watch's c@10 queued, want 9", got)
	}
	r.deliver("c")
	if got := since(); got != 12 {
		t.Errorf("Since %d once the stopped watch's events were delivered, want 12", got)
	}
	if len(r.rsc.retired) != 0 {
		t.Errorf("%d stopped watches kept after their events were delivered", len(r.rsc.retired))
	}
}

// TestSweepForgetsOutOfScopeInCheckpoint: an object no watch covers any
// more (the scope narrowed) leaves the checkpoint too, behind its events
// still queued and without a rule hearing of it, so that a scope widened
// again after a restart reports it as initial.
func TestSweepForgetsOutOfScopeInCheckpoint(t *testing.T) {
	cp := newMemCheckpoint()
	r := startRun(t, cp)
	l := r.rsc.ledger
	l.bind(compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n"))
	l.admit(nil, config.Added, obj("a", "ua", "5"), nil, true)
	r.deliver("a")
	l.admit(nil, config.Updated, obj("a", "ua", "6"), obj("a", "ua", "5"), false)
	l.sweep([]listedScope{{namespace: "elsewhere", selector: labels.Everything(), listed: 9,
		get: func(nsName) *object.Object { return nil }}})
	got := []string{r.deliver("a")}
	o := r.e.pending.items[objKey{gvr: l.gvrKey, Namespace: "ns", Name: "a"}]
	if o == nil || len(o.events[0].rules) != 0 {
		t.Fatalf("after the sweep, the object's queue holds %v: want a DELETED for no rule", r.queued())
	}
	got = append(got, r.deliver("a"))
	if want := []string{"UPDATED a ua@6 old=ua@5", "DELETED a ua@ (new rules)"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
	if _, ok := cp.objects["ua"]; ok {
		t.Error("an object out of every watch's scope is still in the checkpoint")
	}
}
