package engine

import (
	"cmp"
	"context"
	"slices"
	"sort"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
	"github.com/faro-dev/faro/rules"
)

// resource is one watched resource: its ledger and its informers.
type resource struct {
	api    apiResource
	ledger *resourceLedger
	// watches are the running informers: the desired ones, and replaced
	// ones that keep running until every desired one has listed.
	watches map[watchKey]*informer
	desired map[watchKey]bool
	// sweep: once every desired informer has listed, the ledger must be
	// reconciled with their caches (the set of informers changed, or the
	// ledger was resumed from the checkpoint).
	sweep bool
	// listed is set once every desired informer has listed.
	listed bool
	// retired are stopped informers whose events are still queued: how
	// far they were delivered still bounds the record's Since.
	retired []*informer
}

// ReconcileResult says what a reconcile changed.
type ReconcileResult struct {
	Started, Stopped []string
	Pending          int
}

// Apply makes set the live rule set. Events already admitted are delivered
// to the rules bound when they were admitted; later ones to set. Rules new
// to a resource get an initial ADDED for every object the others know, and
// informers are diffed: a watch that both the old and the new rules need
// keeps running. Called before Run (after Discover), it starts the first
// watches; their events wait in the queue for the workers.
func (e *Engine) Apply(ctx context.Context, set *rules.Set) ReconcileResult {
	e.rules.Store(set)
	return e.reconcile(ctx)
}

// reconcile binds the live rules to the resources they resolve to on the
// current discovery snapshot, forgets the resources no rule watches any
// more, and starts and stops informers so that each resource has the
// watches its rules need. A replaced informer keeps running until all of its
// resource's desired informers have listed; the ledger drops what the
// overlap delivers twice.
func (e *Engine) reconcile(ctx context.Context) ReconcileResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	var res ReconcileResult
	set := e.rules.Load()
	if set == nil || e.index == nil || e.closed || ctx.Err() != nil {
		return res
	}

	byGVR := map[schema.GroupVersionResource][]*rules.Rule{}
	apis := map[schema.GroupVersionResource]apiResource{}
	pendErr := map[string]string{}
	for _, r := range set.Rules {
		api, err := e.index.resolve(r.Resource)
		if err != nil {
			pendErr[r.ID] = err.Error()
			if e.pendErr[r.ID] != err.Error() {
				e.log.Warn("resource not watched yet; waiting for it to be served", "rule", r.ID, "reason", err)
			}
			continue
		}
		if e.pendErr[r.ID] != "" {
			e.log.Info("resource is served now", "rule", r.ID, "gvr", gvrString(api.GVR))
		}
		e.checkScope(r, api)
		byGVR[api.GVR] = append(byGVR[api.GVR], r)
		apis[api.GVR] = api
	}
	e.pendErr = pendErr
	res.Pending = len(pendErr)

	for gvr, rsc := range e.resources {
		if _, ok := byGVR[gvr]; !ok {
			res.Stopped = append(res.Stopped, e.dropResource(rsc)...)
		}
	}
	for gvr, rs := range byGVR {
		rsc := e.resources[gvr]
		if rsc == nil {
			rsc = e.newResource(apis[gvr])
			e.resources[gvr] = rsc
		}
		rsc.ledger.bind(rs)

		// With a checkpoint, bodies are always cached: what it keeps of
		// each object is what rules added after a restart are told was
		// last delivered.
		desired := map[watchKey]bool{}
		for _, k := range watchesFor(gvr, apis[gvr].Namespaced, rs, e.opts.Checkpoint != nil) {
			desired[k] = true
		}
		changed := false
		for k, w := range rsc.watches {
			// A replacement replaced before it listed serves nobody.
			if !desired[k] && !w.synced.Load() {
				e.stopInformer(rsc, w)
				res.Stopped = append(res.Stopped, k.String())
				changed = true
			}
		}
		for k := range desired {
			if _, ok := rsc.watches[k]; !ok {
				e.startInformer(ctx, rsc, k)
				res.Started = append(res.Started, k.String())
				changed = changed || len(rsc.desired) > 0
			}
		}
		for k := range rsc.watches {
			if !desired[k] {
				res.Stopped = append(res.Stopped, k.String())
				changed = true
			}
		}
		rsc.desired = desired
		if changed {
			rsc.sweep = true
			rsc.ledger.setOverlap(len(rsc.watches) > len(desired))
		}
		e.settle(rsc)
	}
	sort.Strings(res.Started)
	sort.Strings(res.Stopped)
	return res
}

// newResource starts the ledger of a resource that is bound for the first
// time, resumed from the checkpoint when there is one. Called with e.mu held.
func (e *Engine) newResource(api apiResource) *resource {
	l := newResourceLedger(api.GVR, api.Kind, e.enqueue, e.log.Warn)
	rsc := &resource{api: api, ledger: l, watches: map[watchKey]*informer{}}
	// A resource that appeared while Faro ran (its CRD was created): what
	// was created since is news, not initial state.
	l.since = e.appeared[api.GVR]
	if cp := e.opts.Checkpoint; cp != nil {
		l.save = func(b *Binding) { cp.Bind(api.GVR, b) }
		r := cp.Resume(api.GVR)
		for _, o := range r.Objects {
			rv, _ := object.ParseRV(o.ResourceVersion)
			l.entries.add(&entry{place: placeKey(nsName{o.Namespace, o.Name}), uid: o.UID, rv: rv})
		}
		if len(r.Objects) > 0 || r.Binding.Since != 0 {
			l.origin, l.resumed, rsc.sweep = r.Binding.Since, r.Object, true
			l.since = cmp.Or(l.origin, l.since)
			l.told = map[string]bool{}
			for _, k := range r.Binding.Rules {
				l.told[k] = true
			}
			e.log.Info("ledger resumed", "gvr", gvrString(api.GVR), "objects", len(r.Objects))
		}
	}
	return rsc
}

// dropResource stops the informers of a resource no rule watches any more
// and forgets its ledger; events already queued are still delivered. Called
// with e.mu held.
func (e *Engine) dropResource(rsc *resource) (stopped []string) {
	for k, w := range rsc.watches {
		e.stopInformer(rsc, w)
		stopped = append(stopped, k.String())
	}
	rsc.ledger.forget()
	delete(e.resources, rsc.api.GVR)
	return stopped
}

// settle finishes a change of a resource's informers once every desired one
// has listed: the replaced ones stop (their handler calls drained), then the
// ledger is swept against the caches of the desired ones. Called with e.mu
// held.
func (e *Engine) settle(rsc *resource) {
	// Whatever settle does, the ledger learns whether a watch caching
	// metadata only is left (reconcile may have just started one).
	defer e.notePartial(rsc)
	for k := range rsc.desired {
		if w := rsc.watches[k]; w == nil || !w.synced.Load() {
			return
		}
	}
	for k, w := range rsc.watches {
		if !rsc.desired[k] {
			e.stopInformer(rsc, w)
		}
	}
	if !rsc.sweep {
		e.listed(rsc)
		return
	}
	defer e.listed(rsc)
	rsc.sweep = false
	var scopes []listedScope
	for k := range rsc.desired {
		w := rsc.watches[k]
		sel, _ := labels.Parse(k.Selector) // built from a parsed selector
		store := w.inf.GetStore()
		scopes = append(scopes, listedScope{namespace: k.Namespace, selector: sel, listed: w.listed.Load(),
			get: func(n nsName) *object.Object {
				o, _, _ := store.GetByKey(describe(n.namespace, n.name))
				obj, _ := o.(*object.Object)
				return obj
			}})
	}
	rsc.ledger.sweep(scopes)
}

// listed ends the first listing of a resource whose desired informers have
// all listed (see resourceLedger.listed). Called with e.mu held.
func (e *Engine) listed(rsc *resource) {
	if rsc.listed {
		return
	}
	rsc.listed = true
	var first uint64
	for k := range rsc.desired {
		if rv := rsc.watches[k].listed.Load(); rv != 0 {
			first = minMark(first, rv)
		}
	}
	rsc.ledger.listed(first)
}

// notePartial tells the ledger of rsc whether one of its watches caches
// metadata only (see bind). Called with e.mu held.
func (e *Engine) notePartial(rsc *resource) {
	partial := false
	for k := range rsc.watches {
		partial = partial || !k.Bodies
	}
	rsc.ledger.setPartialWatch(partial)
}

// watchesFor decides the informers one resource needs for its rules: one
// per namespace when every rule names only literal namespaces, else one for
// all namespaces; the label selector goes to the server only when every rule
// has the same one, otherwise each rule filters on its own selector. They
// cache objects whole when keepBodies is set or a rule reads bodies, else
// their metadata only.
func watchesFor(gvr schema.GroupVersionResource, namespaced bool, rs []*rules.Rule, keepBodies bool) []watchKey {
	bodies := keepBodies || slices.ContainsFunc(rs, (*rules.Rule).ReadsBody)
	selector := rs[0].Selector().String()
	for _, r := range rs[1:] {
		if r.Selector().String() != selector {
			selector = ""
			break
		}
	}
	if !namespaced {
		return []watchKey{{GVR: gvr, Selector: selector, Bodies: bodies}}
	}
	var namespaces []string
	for _, r := range rs {
		if len(r.NamespacePatterns) == 0 || !all(r.NamespacePatterns, config.IsLiteralPattern) {
			return []watchKey{{GVR: gvr, Selector: selector, Bodies: bodies}}
		}
		namespaces = append(namespaces, r.NamespacePatterns...)
	}
	slices.Sort(namespaces)
	var keys []watchKey
	for _, ns := range slices.Compact(namespaces) {
		keys = append(keys, watchKey{GVR: gvr, Namespace: ns, Selector: selector, Bodies: bodies})
	}
	return keys
}

func all(ss []string, f func(string) bool) bool {
	for _, s := range ss {
		if !f(s) {
			return false
		}
	}
	return true
}

// checkScope warns when an entry's scope disagrees with the server's; the
// server's scope is used.
func (e *Engine) checkScope(r *rules.Rule, api apiResource) {
	want := config.ScopeCluster
	if api.Namespaced {
		want = config.ScopeNamespaced
	}
	if r.Scope != "" && r.Scope != want {
		e.log.Warn("configured scope differs from the server's; using the server's", "rule", r.ID, "configured", r.Scope, "server", want)
	}
	if !api.Namespaced && len(r.NamespacePatterns) > 0 && !isNamespaceResource(api.GVR) {
		e.log.Warn("namespace patterns do not apply to a cluster-scoped resource; ignoring them", "rule", r.ID, "gvr", gvrString(api.GVR))
	}
}
