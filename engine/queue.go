package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/rules"
)

// objKey names one object of one resource version. It is what the workqueue
// schedules: the queue never hands one key to two workers at once, which is
// what keeps an object's events in order.
type objKey struct {
	GVR             schema.GroupVersionResource
	Namespace, Name string
}

// delivery is one event from an informer, plus how far its processing got
// (so a retry resumes after the steps that already succeeded).
type delivery struct {
	typ      config.EventType
	gvr      schema.GroupVersionResource
	obj, old *unstructured.Unstructured
	initial  bool
	isNS     bool
	// audience narrows who sees an event a replacement watch synthesized
	// from its handover; carried holds the ruleKeys of the rules that saw
	// the replaced watch's events.
	audience audience
	carried  map[string]bool

	// Owned by the worker holding the key.
	matched bool
	matches []*rules.Rule
	step    int // steps done: for each match, 1 (log) + one per plugin
}

// audience says which rules an event is for.
type audience uint8

const (
	allRules     audience = iota
	carriedRules          // only rules that saw the replaced watch
	newRules              // only rules new to the resource
)

// isFor reports whether rule r is in d's audience.
func (d *delivery) isFor(r *rules.Rule) bool {
	switch d.audience {
	case carriedRules:
		return d.carried[ruleKey(r)]
	case newRules:
		return !d.carried[ruleKey(r)]
	default:
		return true
	}
}

// pendingEvents holds every object's undelivered events, oldest first. The
// workqueue deduplicates keys; the events themselves are never collapsed.
type pendingEvents struct {
	mu    sync.Mutex
	items map[objKey][]*delivery
}

// push appends d and reports whether k had nothing pending before.
func (p *pendingEvents) push(k objKey, d *delivery) (first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first = len(p.items[k]) == 0
	p.items[k] = append(p.items[k], d)
	return first
}

// len returns how many events are pending in all.
func (p *pendingEvents) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.items {
		n += len(q)
	}
	return n
}

func (p *pendingEvents) head(k objKey) *delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	if q := p.items[k]; len(q) > 0 {
		return q[0]
	}
	return nil
}

func (p *pendingEvents) pop(k objKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.items[k]
	if len(q) <= 1 {
		delete(p.items, k)
		return
	}
	q[0] = nil
	p.items[k] = q[1:]
}

// enqueue is called from informer event handlers: it only appends and
// schedules, so it never blocks an informer. The key is scheduled only when
// the object had nothing pending: otherwise it is already queued, being
// processed (the worker drains its events) or backing off after a failure
// (and must not be woken early by a newer event).
func (e *Engine) enqueue(d *delivery) {
	e.stats.Events.Add(1)
	k := objKey{GVR: d.gvr, Namespace: d.obj.GetNamespace(), Name: d.obj.GetName()}
	if e.pending.push(k, d) {
		e.queue.Add(k)
	}
}

// processNext takes one key and processes its pending events in order. A
// failing event stays at the head of its object's queue and the key is
// retried with backoff; after MaxRetries the event is dropped (logged and
// counted) and the object's later events go on.
func (e *Engine) processNext(ctx context.Context) bool {
	k, shutdown := e.queue.Get()
	if shutdown {
		return false
	}
	defer e.queue.Done(k)
	for ctx.Err() == nil {
		d := e.pending.head(k)
		if d == nil {
			e.queue.Forget(k)
			return true
		}
		if err := e.process(ctx, d); err != nil {
			if e.queue.NumRequeues(k) < e.opts.MaxRetries {
				e.stats.Retries.Add(1)
				e.log.Debug("event failed; retrying", "object", describe(k.Namespace, k.Name), "gvr", gvrString(k.GVR), "event", d.typ, "error", err)
				e.queue.AddRateLimited(k)
				return true
			}
			e.stats.Dropped.Add(1)
			e.log.Error("event dropped after retries", "object", describe(k.Namespace, k.Name), "gvr", gvrString(k.GVR),
				"event", d.typ, "retries", e.opts.MaxRetries, "error", err)
		}
		e.queue.Forget(k)
		e.pending.pop(k)
	}
	return false // shutting down: what is left is counted by Run
}

// process matches d against the rules live when it is first tried, logs
// each match and hands it to the plugins its rule names.
func (e *Engine) process(ctx context.Context, d *delivery) error {
	if !d.matched {
		d.matches = e.match(ctx, d)
		d.matched = true
	}
	step := 0
	for _, r := range d.matches {
		m := &Matched{Type: d.typ, GVR: d.gvr, Object: d.obj, OldObject: d.old, Initial: d.initial, Rule: r}
		if step >= d.step {
			e.logMatch(m)
			d.step++
		}
		step++
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

// match evaluates every rule bound to d's resource. A CEL evaluation error
// is no match: it is counted and logged (rate-limited per rule), never
// retried.
func (e *Engine) match(ctx context.Context, d *delivery) []*rules.Rule {
	b := e.binding.Load()
	rs := b.byGVR[d.gvr]
	if len(rs) == 0 {
		return nil
	}
	ev := &rules.Event{Type: d.typ, Object: d.obj, OldObject: d.old, Initial: d.initial, IsNamespace: d.isNS}
	var out []*rules.Rule
	for _, r := range rs {
		if !d.isFor(r) {
			continue
		}
		ok, err := r.Matches(ctx, ev)
		if err != nil {
			e.stats.CELErrors.Add(1)
			e.celLog.log(e.log, r.ID, describe(d.obj.GetNamespace(), d.obj.GetName()), err)
			continue
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// logMatch writes the matched-event line. It is written synchronously: a
// slow output backs up the queue, and no matched line is ever dropped.
func (e *Engine) logMatch(m *Matched) {
	e.stats.Matched.Add(1)
	gvr := m.GVRString()
	ns, name := m.Object.GetNamespace(), m.Object.GetName()
	msg := fmt.Sprintf("CONFIG [%s] %s %s", m.Type, gvr, m.Key())
	if e.opts.JSON {
		e.opts.Events.Info(msg, "event_type", string(m.Type), "gvr", gvr, "namespace", ns, "name", name,
			"uid", string(m.Object.GetUID()), "resource_version", m.Object.GetResourceVersion(), "rule", m.Rule.ID, "initial", m.Initial)
		return
	}
	e.opts.Events.Info(msg, "uid", string(m.Object.GetUID()), "resource_version", m.Object.GetResourceVersion(),
		"rule", m.Rule.ID, "initial", m.Initial)
}

// celErrorLog logs CEL evaluation errors at most once per interval per rule,
// with the number suppressed in between, so a bad rule on a busy resource
// cannot flood the log.
type celErrorLog struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	quiet map[string]int
}

type warner interface {
	Warn(msg string, args ...any)
}

func (c *celErrorLog) log(l warner, rule, object string, err error) {
	c.mu.Lock()
	if c.last == nil {
		c.last, c.quiet = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(c.last[rule]) < c.every {
		c.quiet[rule]++
		c.mu.Unlock()
		return
	}
	suppressed := c.quiet[rule]
	c.last[rule], c.quiet[rule] = now, 0
	c.mu.Unlock()
	l.Warn("CEL evaluation failed; treated as no match", "rule", rule, "object", object, "error", err, "suppressed_since_last", suppressed)
}
