package engine

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unique"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/internal/object"
	"github.com/faro-dev/faro/rules"
)

// objKey names one object of one resource version; the resource is
// interned, so that a key is small and compares fast.
type objKey struct {
	gvr             unique.Handle[schema.GroupVersionResource]
	Namespace, Name string
}

// GVR returns the key's resource.
func (k objKey) GVR() schema.GroupVersionResource { return k.gvr.Value() }

// delivery is one event the ledger admitted, plus how far its processing
// got (so a retry resumes after the steps that already succeeded).
type delivery struct {
	typ      config.EventType
	obj, old *object.Object // obj is never nil
	initial  bool
	informs  bool // an initial ADDED to rules new to the resource (see informed)
	matched  bool // owned by the worker holding the key, as ev and matches are
	// rules are the rules bound to the resource when the event was
	// admitted (for the initial ADDED of rules new to a resource, those
	// rules); ledger is the ledger that admitted it.
	rules  []*rules.Rule
	ledger *resourceLedger
	// src is the informer whose event this is, rv its resource version
	// (nil and 0 for events the ledger made up: initial events of new
	// rules, deletions found by a sweep). newest is the version of the
	// newest UPDATED merged into it (see push), 0 when none was.
	src    *informer
	rv     uint64
	newest uint64
	at     time.Time // when it was queued

	// Owned by the worker holding the key.
	ev      *rules.Event // what the rules matched; each rule's view of the objects
	matches []*rules.Rule
	step    int // steps done: for each match, 1 (log) + one per plugin
}

// deliveries recycles delivery records: the ledger takes one per event it
// admits, and the queue gives it back once the event is done with (its
// processing finished, or it was merged into the one before it).
var deliveries = sync.Pool{New: func() any { return new(delivery) }}

// release gives d back for reuse; nothing may hold it any more.
func (d *delivery) release() {
	*d = delivery{}
	deliveries.Put(d)
}

// key is the queue key of d's object.
func (d *delivery) key() objKey {
	return objKey{gvr: d.ledger.gvrKey, Namespace: d.obj.Namespace, Name: d.obj.Name}
}

// started reports whether a worker began processing d.
func (d *delivery) started() bool { return d.matched }

// srcKey names d's informer as Marks does; "" when d has none.
func (d *delivery) srcKey() string {
	if d.src == nil {
		return ""
	}
	return d.src.key.String()
}

// pendingObj is one object's undelivered events, oldest first, from its
// first pending event until its last is done. It is what the workqueue
// schedules (a pointer is a small queue key): the queue never hands one to
// two workers at once, which is what keeps an object's events in order.
type pendingObj struct {
	key    objKey
	events []*delivery
}

// pendingEvents holds every object's undelivered events. The workqueue
// deduplicates its items; an object's events are collapsed only past max
// (see push).
type pendingEvents struct {
	mu    sync.Mutex
	items map[objKey]*pendingObj
	total int
	max   int
	// While bounded (the engine delivers), a watch's initial list waits
	// for room below listBacklog queued events (see waitRoom); room is
	// signalled when the total falls below it.
	bounded bool
	room    sync.Cond
}

// init makes p empty, compacting an object's backlog past maxPerObject events.
func (p *pendingEvents) init(maxPerObject int) {
	p.items, p.max = map[objKey]*pendingObj{}, maxPerObject
	p.room.L = &p.mu
}

// listBacklog is how many queued events make a watch's initial list wait
// for the workers (see waitRoom).
const listBacklog = 1000

// waitRoom blocks, while the queue is bounded, until fewer than listBacklog
// events are queued, and reports false if ctx ended first. An informer
// calls it before each ADDED of its initial list: the list's objects are
// in the informer's cache already, and each ADDED queued costs a delivery
// record and queue entries (about 370 bytes), so a first list of many
// objects would otherwise hold all of them as queued events at once.
// Events of the watch itself (updates, deletions) never wait: they are
// what the per-object backlog limit compacts.
func (p *pendingEvents) waitRoom(ctx context.Context) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.bounded || p.total < listBacklog {
		return true
	}
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.room.Broadcast()
	})
	defer stop()
	for p.bounded && p.total >= listBacklog {
		if ctx.Err() != nil {
			return false
		}
		p.room.Wait()
	}
	return true
}

// bound turns waitRoom's bound on (the engine delivers) or off (it stands
// by, is paused or stops: nothing may wait for workers that do not run).
func (p *pendingEvents) bound(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bounded = on
	p.room.Broadcast()
}

// push appends d to the events of k, and returns them and whether k had
// nothing pending before. When k already has max events pending, an
// UPDATED following an UPDATED that no worker has started (and that is for
// the same rules) is merged into it: one UPDATED from the older old state
// to the newest state (compacted).
func (p *pendingEvents) push(k objKey, d *delivery) (o *pendingObj, first, compacted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o = p.items[k]
	if o == nil {
		o = &pendingObj{key: k}
		p.items[k] = o
	}
	q := o.events
	if n := len(q); n >= p.max && n >= 2 && d.typ == config.Updated {
		if tail := q[n-1]; tail.typ == config.Updated && !tail.started() && sameRules(tail.rules, d.rules) {
			tail.obj, tail.newest = d.obj, d.rv
			return o, false, true
		}
	}
	o.events = append(q, d)
	p.total++
	return o, len(q) == 0, false
}

// sameRules reports whether a and b are the same bound rule list.
func sameRules(a, b []*rules.Rule) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// len returns how many events are pending in all.
func (p *pendingEvents) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// head returns o's oldest event, nil when it has none (its events were
// trimmed, see Trim).
func (p *pendingEvents) head(o *pendingObj) *delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(o.events) > 0 {
		return o.events[0]
	}
	return nil
}

// pop removes o's oldest event and reports whether more remain. With none
// left, o is forgotten: the object's next event starts another.
func (p *pendingEvents) pop(o *pendingObj) (more bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := o.events
	if len(q) == 0 {
		return false
	}
	p.total--
	if p.total == listBacklog-1 {
		p.room.Broadcast()
	}
	if len(q) == 1 {
		p.forget(o)
		return false
	}
	q[0] = nil
	o.events = q[1:]
	return true
}

// forget drops o, which has no events left. Called with p.mu held.
func (p *pendingEvents) forget(o *pendingObj) {
	o.events = nil
	if p.items[o.key] == o {
		delete(p.items, o.key)
	}
}

// enqueue is the ledger's push: it only appends and schedules, so it never
// blocks an informer. The key is scheduled only when the object had nothing
// pending: otherwise it is already queued, being processed (the worker
// requeues it) or backing off after a failure (and must not be woken early
// by a newer event).
func (e *Engine) enqueue(d *delivery) {
	// Once pushed, d belongs to the queue: a worker may process and
	// release it at once, so it is counted as queued before.
	k, src, rv := d.key(), d.src, d.rv
	d.at = time.Now()
	metrics.AddPending(1)
	if src != nil {
		src.marks.queued(rv)
	}
	o, first, compacted := e.pending.push(k, d)
	if compacted {
		// Merged into the tail, an older event still pending: delivering
		// the tail delivers this one.
		metrics.AddPending(-1)
		if src != nil {
			src.marks.done(rv)
		}
		e.stats.Compacted.Add(1)
		e.warnings.warn(e.log, "compact:"+gvrString(k.GVR()), "backlog of an object over max_pending_per_object; collapsing its UPDATEDs",
			"gvr", gvrString(k.GVR()), "object", describe(k.Namespace, k.Name), "max_pending_per_object", e.pending.max)
		d.release()
		return
	}
	if first {
		e.queue.Add(o)
	}
}

// processNext takes one key and processes the oldest pending event of its
// object; the key is requeued when more remain, so that a busy object does
// not hold a worker. A failing event stays at the head of its object's queue
// and the key is retried with backoff; after MaxRetries the event is dropped
// (logged and counted) and the object's later events go on.
func (e *Engine) processNext(ctx context.Context) bool {
	o, shutdown := e.queue.Get()
	if shutdown {
		return false
	}
	defer e.queue.Done(o)
	if e.stopping.Load() {
		return false // what is left is counted by Run
	}
	d := e.pending.head(o)
	if d == nil {
		e.queue.Forget(o)
		return true
	}
	k := o.key
	work := e.opts.Progress.Begin()
	err := e.process(ctx, d)
	e.opts.Progress.End(work)
	if err != nil {
		if ctx.Err() != nil {
			return false // cancelled at shutdown: the event stays pending
		}
		if e.queue.NumRequeues(o) < e.opts.MaxRetries {
			metrics.ObserveRetry()
			e.log.Debug("event failed; retrying", "object", describe(k.Namespace, k.Name), "gvr", gvrString(k.GVR()), "event", d.typ, "error", err)
			e.queue.AddRateLimited(o)
			return true
		}
		metrics.ObserveDrop()
		e.log.Error("event dropped after retries", "object", describe(k.Namespace, k.Name), "gvr", gvrString(k.GVR()),
			"event", d.typ, "retries", e.opts.MaxRetries, "error", err)
	}
	e.queue.Forget(o)
	metrics.ObserveProcessed(d.at)
	e.delivered(d)
	more := e.pending.pop(o)
	d.release()
	if more {
		e.queue.Add(o)
	}
	return true
}

// delivered advances the ledger's delivered mark: the Checkpoint records the
// event once its last handler is done.
func (e *Engine) delivered(d *delivery) {
	metrics.AddPending(-1)
	// Recorded before the informer's mark moves past it (the mark may
	// become the record's Since) and before its rules count as told.
	if e.opts.Checkpoint != nil && !d.ledger.forgotten.Load() {
		e.opts.Checkpoint.Record(d.ledger.gvr, Mark{Object: d.obj, Deleted: d.typ == config.Deleted})
		if d.informs {
			d.ledger.informed(d.rules)
		}
	}
	if d.src != nil {
		d.src.marks.done(d.rv)
	}
}

// process matches d against the rules it was admitted for (once), logs
// each match and hands it to the plugins its rule names.
func (e *Engine) process(ctx context.Context, d *delivery) error {
	if !d.matched {
		d.matches = e.match(ctx, d)
		d.matched = true
	}
	step := 0
	for _, r := range d.matches {
		if step >= d.step {
			e.logMatch(d, r)
			d.step++
		}
		step++
		if len(r.Plugins) == 0 {
			continue
		}
		// What the rule may see: a Secret's values are redacted unless it
		// reveals them.
		obj, old, err := d.ev.Objects(r)
		if err != nil {
			return err
		}
		m := &Matched{Type: d.typ, GVR: d.ledger.gvr, Object: obj, OldObject: old, Initial: d.initial, Rule: r}
		for _, p := range r.Plugins {
			if step >= d.step {
				if e.opts.Handler == nil {
					return fmt.Errorf("rule %s names plugin %q but no plugin handler is configured", r.ID, p)
				}
				if err := e.opts.Handler.Handle(ctx, m, p); err != nil {
					return fmt.Errorf("plugin %s: %w", p, err)
				}
				d.step++
			}
			step++
		}
	}
	return nil
}

// match evaluates the rules d is for. A CEL evaluation error is no match:
// it is counted and logged (rate-limited per rule), never retried.
func (e *Engine) match(ctx context.Context, d *delivery) []*rules.Rule {
	if len(d.rules) == 0 {
		return nil
	}
	ev := &rules.Event{Type: d.typ, Object: d.obj, OldObject: d.old, Initial: d.initial, IsNamespace: d.ledger.isNS}
	d.ev = ev
	var out []*rules.Rule
	for _, r := range d.rules {
		ok, err := r.Matches(ctx, ev)
		if err != nil {
			metrics.ObserveCELError(r.ID)
			e.warnings.warn(e.log, "cel:"+r.ID, "CEL evaluation failed; treated as no match",
				"rule", r.ID, "object", describe(d.obj.Namespace, d.obj.Name), "error", err)
			continue
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// logMatch writes the line of d's match by r. It is written synchronously:
// a slow output backs up the queue, and no matched line is ever dropped.
func (e *Engine) logMatch(d *delivery, r *rules.Rule) {
	metrics.ObserveMatch(r.ID)
	gvr := gvrString(d.ledger.gvr)
	o := d.obj
	msg := fmt.Sprintf("CONFIG [%s] %s %s", d.typ, gvr, describe(o.Namespace, o.Name))
	if e.opts.JSON {
		e.opts.Events.Info(msg, "event_type", string(d.typ), "gvr", gvr, "namespace", o.Namespace, "name", o.Name,
			"uid", string(o.UID), "resource_version", o.ResourceVersion, "rule", r.ID, "initial", d.initial)
		return
	}
	e.opts.Events.Info(msg, "uid", string(o.UID), "resource_version", o.ResourceVersion,
		"rule", r.ID, "initial", d.initial)
}

// limitedLog writes a warning at most once per interval per key, with the
// number suppressed in between, so that a bad rule on a busy resource or a
// hot object cannot flood the log.
type limitedLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	quiet map[string]int
}

type warner interface {
	Warn(msg string, args ...any)
}

func (c *limitedLog) warn(l warner, key, msg string, args ...any) {
	c.mu.Lock()
	if c.last == nil {
		c.last, c.quiet = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(c.last[key]) < c.every {
		c.quiet[key]++
		c.mu.Unlock()
		return
	}
	suppressed := c.quiet[key]
	c.last[key], c.quiet[key] = now, 0
	c.mu.Unlock()
	l.Warn(msg, append(args, "suppressed_since_last", suppressed)...)
}
