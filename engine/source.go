package engine

import (
	"context"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/rules"
)

// watchKey identifies one informer: a resource, a namespace ("" = all) and
// the label selector applied on the server ("" = none).
type watchKey struct {
	GVR       schema.GroupVersionResource
	Namespace string
	Selector  string
}

func (k watchKey) String() string {
	s := gvrString(k.GVR)
	if k.Namespace != "" {
		s += " in " + k.Namespace
	}
	if k.Selector != "" {
		s += " where " + k.Selector
	}
	return s
}

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
}

// informer is one running dynamic informer.
type informer struct {
	key    watchKey
	inf    cache.SharedIndexInformer
	cancel context.CancelFunc
	done   chan struct{} // closed when the informer and its handler calls are over
	synced atomic.Bool
	// listed is the resource version of its last list (or of the end of
	// the initial events of a watch-list): its cache is complete up to it.
	listed atomic.Uint64
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
		known := rsc.ledger.boundKeys()
		var added []*rules.Rule
		for _, r := range rs {
			if !known[r.Key] {
				added = append(added, r)
			}
		}
		rsc.ledger.bind(rs, added)

		desired := map[watchKey]bool{}
		for _, k := range watchesFor(gvr, apis[gvr].Namespaced, rs) {
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
	if e.opts.Checkpoint != nil {
		r := e.opts.Checkpoint.Resume(api.GVR)
		for _, o := range r.Objects {
			rv, _ := parseRV(o.ResourceVersion)
			l.entries[nsName{o.Namespace, o.Name}] = &entry{uid: o.UID, rv: rv}
		}
		if len(r.Objects) > 0 {
			l.since, l.resumed, rsc.sweep = r.MaxRV, r.Object, true
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
	rsc.ledger.forgotten.Store(true)
	if e.opts.Checkpoint != nil {
		e.opts.Checkpoint.Forget(rsc.api.GVR)
	}
	delete(e.resources, rsc.api.GVR)
	return stopped
}

// settle finishes a change of a resource's informers once every desired one
// has listed: the replaced ones stop (their handler calls drained), then the
// ledger is swept against the caches of the desired ones. Called with e.mu
// held.
func (e *Engine) settle(rsc *resource) {
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
		return
	}
	rsc.sweep = false
	var scopes []listedScope
	for k := range rsc.desired {
		w := rsc.watches[k]
		sel, _ := labels.Parse(k.Selector) // built from a parsed selector
		store := w.inf.GetStore()
		scopes = append(scopes, listedScope{namespace: k.Namespace, selector: sel, listed: w.listed.Load(),
			has: func(n nsName) bool {
				_, ok, _ := store.GetByKey(describe(n.namespace, n.name))
				return ok
			}})
	}
	rsc.ledger.sweep(scopes)
}

// watchesFor decides the informers one resource needs for its rules: one
// per namespace when every rule names only literal namespaces, else one for
// all namespaces; the label selector goes to the server only when every rule
// has the same one, otherwise each rule filters on its own selector.
func watchesFor(gvr schema.GroupVersionResource, namespaced bool, rs []*rules.Rule) []watchKey {
	selector := rs[0].Selector().String()
	for _, r := range rs[1:] {
		if r.Selector().String() != selector {
			selector = ""
			break
		}
	}
	if !namespaced {
		return []watchKey{{GVR: gvr, Selector: selector}}
	}
	var namespaces []string
	for _, r := range rs {
		if len(r.NamespacePatterns) == 0 || !all(r.NamespacePatterns, config.IsLiteralPattern) {
			return []watchKey{{GVR: gvr, Selector: selector}}
		}
		namespaces = append(namespaces, r.NamespacePatterns...)
	}
	slices.Sort(namespaces)
	var keys []watchKey
	for _, ns := range slices.Compact(namespaces) {
		keys = append(keys, watchKey{GVR: gvr, Namespace: ns, Selector: selector})
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

// watchWarnEvery bounds how often a failing watch is reported at WARN.
const watchWarnEvery = time.Minute

// startInformer starts one informer of rsc, live at once: its events pass
// the resource's ledger. Its goroutines end when ctx is done or it is
// stopped. Called with e.mu held.
func (e *Engine) startInformer(ctx context.Context, rsc *resource, k watchKey) {
	w := &informer{key: k, done: make(chan struct{})}
	w.inf = cache.NewSharedIndexInformerWithOptions(e.listWatch(w), &unstructured.Unstructured{}, cache.SharedIndexInformerOptions{})
	_ = w.inf.SetTransform(stripManagedFields)
	var lastWarn time.Time // owned by the reflector's goroutine
	_ = w.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		switch {
		case ctx.Err() != nil:
		case apierrors.IsNotFound(err):
			// The resource went away (CRD deleted): let discovery stop us
			// instead of retrying a 404 forever.
			e.log.Debug("watch: resource not found; rediscovering", "watch", k.String())
			e.trigger()
		case time.Since(lastWarn) >= watchWarnEvery:
			// Forbidden (RBAC), an unreachable server, ...: the informer
			// retries with backoff; say so at most once a minute per watch.
			lastWarn = time.Now()
			e.log.Warn("watch failing; retrying with backoff (informers it replaces keep serving until it lists)", "watch", k.String(), "error", err)
		default:
			e.log.Debug("watch error; retrying with backoff", "watch", k.String(), "error", err)
		}
	})
	l := rsc.ledger
	reg, _ := w.inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				l.admit(config.Added, u, nil, initial)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 || o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync, not a change
			}
			l.admit(config.Updated, n, o, false)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				l.admit(config.Deleted, u, nil, false)
			}
		},
	})
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	rsc.watches[k] = w
	e.stats.Informers.Add(1)
	e.log.Info("informer started", "watch", k.String())
	go func() {
		defer close(w.done)
		w.inf.RunWithContext(wctx)
	}()
	e.bg.Go(func() {
		if !cache.WaitForCacheSync(wctx.Done(), reg.HasSynced) {
			return
		}
		w.synced.Store(true)
		e.log.Info("informer synced", "watch", k.String())
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.resources[k.GVR] == rsc && rsc.watches[k] == w {
			e.settle(rsc)
		}
	})
}

// listWatch lists and watches one informer's scope, noting the resource
// version its cache is complete up to after each list: that of a list, or
// of the bookmark that ends the initial events of a watch-list.
func (e *Engine) listWatch(w *informer) cache.ListerWatcher {
	ri := e.dyn.Resource(w.key.GVR).Namespace(w.key.Namespace)
	selector := w.key.Selector
	noteListed := func(rv string) {
		n, _ := parseRV(rv)
		w.listed.Store(n)
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			list, err := ri.List(ctx, o)
			if err == nil {
				noteListed(list.GetResourceVersion())
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			o.LabelSelector = selector
			wi, err := ri.Watch(ctx, o)
			if err != nil || o.SendInitialEvents == nil || !*o.SendInitialEvents {
				return wi, err
			}
			return apiwatch.Filter(wi, func(ev apiwatch.Event) (apiwatch.Event, bool) {
				if ev.Type == apiwatch.Bookmark {
					if m, err := meta.Accessor(ev.Object); err == nil && m.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
						noteListed(m.GetResourceVersion())
					}
				}
				return ev, true
			}), nil
		},
	}, e.dyn)
}

// stopInformer stops an informer and waits until its handler calls are
// over. Called with e.mu held.
func (e *Engine) stopInformer(rsc *resource, w *informer) {
	delete(rsc.watches, w.key)
	w.cancel()
	<-w.done
	e.stats.Informers.Add(-1)
	e.log.Info("informer stopped", "watch", w.key.String())
}

// stopAllWatches stops every informer at shutdown; the ledgers stay.
func (e *Engine) stopAllWatches() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, rsc := range e.resources {
		for _, w := range rsc.watches {
			e.stopInformer(rsc, w)
		}
	}
}

// Watches lists the running informers (for status and tests).
func (e *Engine) Watches() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, rsc := range e.resources {
		for k := range rsc.watches {
			out = append(out, k.String())
		}
	}
	sort.Strings(out)
	return out
}

// watchCRDs triggers a rediscovery whenever a CustomResourceDefinition is
// added, changed (e.g. becomes Established) or deleted. The returned channel
// closes when the informer has stopped.
func (e *Engine) watchCRDs(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if _, ok := e.index.byGVR[crdGVR]; !ok {
		close(done)
		return done
	}
	inf := dynamicinformer.NewFilteredDynamicInformer(e.dyn, crdGVR, "", 0, cache.Indexers{}, nil).Informer()
	_ = inf.SetTransform(stripManagedFields)
	// The newest CRD resource version dates the resources a rediscovery
	// finds new (see Engine.appeared).
	note := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			if rv, ok := parseRV(u.GetResourceVersion()); ok && rv > e.crdRV.Load() {
				e.crdRV.Store(rv)
			}
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			note(obj)
			if !initial {
				e.trigger()
			}
		},
		UpdateFunc: func(_, obj any) { note(obj); e.trigger() },
		DeleteFunc: func(_ any) { e.trigger() },
	})
	go func() {
		defer close(done)
		inf.RunWithContext(ctx)
	}()
	return done
}

// stripManagedFields drops metadata.managedFields before objects are cached:
// nobody reads them and they are often the largest part of an object.
func stripManagedFields(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
	}
	return obj, nil
}

// describe renders an object key for log lines: ns/name or name.
func describe(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
