package engine

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
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

type watch struct {
	key    watchKey
	cancel context.CancelFunc
	done   chan struct{}
	stop   sync.Once

	mu   sync.Mutex
	view view
	// live: events go to the queue. A watch replacing others is not live
	// until it has taken over from them (see handover.go).
	live    bool
	floors  map[types.UID]floor
	carried map[string]bool // ruleKeys of the rules that saw the replaced watches
	// handoff is set once a successor is taking over: the ruleKeys of the
	// rules this watch keeps serving meanwhile (rules new to the resource
	// wait for the successor's initial events); deletions are then
	// remembered for the successor.
	handoff map[string]bool
	// heirs counts the successors that have yet to take over; ceded are
	// the scopes of those that did, whose objects this watch no longer
	// reports. The last heir stops it.
	heirs int
	ceded []scope
}

// scope is what one watch sees of its resource.
type scope struct {
	namespace string
	selector  labels.Selector
}

// has reports whether u is one a watch of this scope sees.
func (sc scope) has(u *unstructured.Unstructured) bool {
	return (sc.namespace == "" || u.GetNamespace() == sc.namespace) && sc.selector.Matches(labels.Set(u.GetLabels()))
}

// cededTo reports whether an object now belongs to a successor. Called with
// w.mu held.
func (w *watch) cededTo(u *unstructured.Unstructured) bool {
	return slices.ContainsFunc(w.ceded, func(sc scope) bool { return sc.has(u) })
}

// ruleKey identifies a rule by its definition, not its place in the file,
// so that inserting an entry above it does not make it look new.
func ruleKey(r *rules.Rule) string {
	def := r.Rule
	def.ID = ""
	return fmt.Sprintf("%#v", def)
}

// binding is what workers match against: the live rule set, and its rules
// grouped by the resource they resolved to. Replaced whole, never mutated.
type binding struct {
	set   *rules.Set
	byGVR map[schema.GroupVersionResource][]*rules.Rule
}

// ReconcileResult says what a reconcile changed.
type ReconcileResult struct {
	Started, Stopped []string
	Pending          int
}

// Apply makes set the live rule set. Events already being processed finish
// under the rules they started with; the next event uses set. Informers are
// diffed: a watch that both the old and the new rules need keeps running.
// Called before Run (after Discover), it starts the first watches; their
// events wait in the queue for the workers.
func (e *Engine) Apply(ctx context.Context, set *rules.Set) ReconcileResult {
	e.rules.Store(set)
	return e.reconcile(ctx)
}

// reconcile computes the watches the live rules need on the current
// discovery snapshot, publishes the new binding, then stops the watches no
// longer needed and starts the missing ones.
func (e *Engine) reconcile(ctx context.Context) ReconcileResult {
	e.mu.Lock()
	defer e.mu.Unlock()
	var res ReconcileResult
	set := e.rules.Load()
	if set == nil || e.index == nil || e.closed || ctx.Err() != nil {
		return res
	}

	byGVR := map[schema.GroupVersionResource][]*rules.Rule{}
	scopes := map[schema.GroupVersionResource]bool{}
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
		scopes[api.GVR] = api.Namespaced
	}
	e.pendErr = pendErr
	res.Pending = len(pendErr)

	desired := map[watchKey]bool{}
	for gvr, rs := range byGVR {
		for _, k := range watchesFor(gvr, scopes[gvr], rs) {
			desired[k] = true
		}
	}
	prev := e.binding.Load()
	// A rule whose resource just stopped being served (its CRD was deleted)
	// stays bound to it without a watch, so that the events already queued
	// for it (the DELETED of every custom resource) are still reported.
	for gvr, rs := range prev.byGVR {
		if _, served := e.index.byGVR[gvr]; served {
			continue
		}
		for _, r := range rs {
			if _, pending := pendErr[r.ID]; pending && slices.Contains(set.Rules, r) {
				byGVR[gvr] = append(byGVR[gvr], r)
			}
		}
	}
	e.binding.Store(&binding{set: set, byGVR: byGVR})

	// Watches no longer wanted stop, except those that new watches of the
	// same resource replace (their namespaces or selector changed): those
	// keep delivering until their successors take over.
	starting := map[schema.GroupVersionResource]bool{}
	for k := range desired {
		if _, ok := e.watches[k]; !ok {
			starting[k.GVR] = true
		}
	}
	replaced := map[schema.GroupVersionResource][]*watch{}
	for k, w := range e.watches {
		if desired[k] {
			continue
		}
		res.Stopped = append(res.Stopped, k.String())
		if !starting[k.GVR] {
			e.stopWatch(w)
			continue
		}
		delete(e.watches, k)
		replaced[k.GVR] = append(replaced[k.GVR], w)
	}
	heirs := map[schema.GroupVersionResource]int{}
	for k := range desired {
		if _, ok := e.watches[k]; !ok {
			heirs[k.GVR]++
		}
	}
	carried := map[schema.GroupVersionResource]map[string]bool{}
	for gvr := range starting {
		carried[gvr] = carriedBy(prev.byGVR[gvr], replaced[gvr])
		for _, w := range replaced[gvr] {
			w.mu.Lock()
			w.handoff, w.heirs = carried[gvr], heirs[gvr]
			w.mu.Unlock()
		}
	}
	for k := range desired {
		if _, ok := e.watches[k]; ok {
			continue
		}
		e.startWatch(ctx, k, replaced[k.GVR], carried[k.GVR])
		res.Started = append(res.Started, k.String())
	}
	sort.Strings(res.Started)
	sort.Strings(res.Stopped)
	return res
}

// carriedBy returns the ruleKeys of the rules that saw what the replaced
// watches delivered: the rules bound before, when a replaced watch was live;
// when none was (a replacement replaced before it took over), the rules its
// own predecessors served.
func carriedBy(bound []*rules.Rule, replaced []*watch) map[string]bool {
	carried := map[string]bool{}
	live := len(replaced) == 0
	for _, w := range replaced {
		w.mu.Lock()
		if w.live {
			live = true
		}
		for k := range w.carried {
			carried[k] = true
		}
		w.mu.Unlock()
	}
	if live {
		carried = map[string]bool{}
		for _, r := range bound {
			carried[ruleKey(r)] = true
		}
	}
	return carried
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

// startWatch starts one informer; its goroutines end when ctx is done or
// the watch is stopped. preds are the watches it replaces (they keep
// running until it takes over), carried the ruleKeys of the rules that saw
// them. Called with e.mu held.
func (e *Engine) startWatch(ctx context.Context, k watchKey, preds []*watch, carried map[string]bool) {
	inf := dynamicinformer.NewFilteredDynamicInformer(e.dyn, k.GVR, k.Namespace, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
		o.LabelSelector = k.Selector
	}).Informer()
	_ = inf.SetTransform(stripManagedFields)
	var lastWarn time.Time // owned by the reflector's goroutine
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
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
			e.log.Warn("watch failing; retrying with backoff", "watch", k.String(), "error", err)
		default:
			e.log.Debug("watch error; retrying with backoff", "watch", k.String(), "error", err)
		}
	})
	w := &watch{key: k, done: make(chan struct{}), view: newView(), live: len(preds) == 0, carried: carried}
	gvr, isNS := k.GVR, isNamespaceResource(k.GVR)
	send := func(d *delivery) {
		d.gvr, d.isNS = gvr, isNS
		if d.carried == nil {
			d.carried = carried
		}
		e.enqueue(d)
	}
	// handle records every event in the watch's view (what it delivered, or
	// before it is live what it saw) and queues it once the watch is live,
	// unless the replaced watches already delivered it.
	handle := func(d *delivery) {
		uid := d.obj.GetUID()
		w.mu.Lock()
		if w.live && (w.cededTo(d.obj) || w.skip(d.typ, d.obj)) {
			w.mu.Unlock()
			return
		}
		if d.typ == config.Deleted {
			delete(w.view.objects, uid)
			if !w.live || w.handoff != nil {
				w.view.deleted[uid] = d.obj
			}
		} else {
			w.view.keep(d.obj)
		}
		live, handoff := w.live, w.handoff
		w.mu.Unlock()
		if !live {
			return
		}
		if handoff != nil {
			d.audience, d.carried = carriedRules, handoff
		}
		send(d)
	}
	reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				handle(&delivery{typ: config.Added, obj: u, initial: initial})
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 || o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync, not a change
			}
			handle(&delivery{typ: config.Updated, obj: n, old: o})
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				handle(&delivery{typ: config.Deleted, obj: u})
			}
		},
	})
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	e.watches[k] = w
	e.stats.Informers.Add(1)
	e.log.Info("informer started", "watch", k.String())
	var wg sync.WaitGroup
	stopped := make(chan struct{}) // the informer and its handler calls are over
	wg.Go(func() {
		defer close(stopped)
		inf.RunWithContext(wctx)
	})
	wg.Go(func() {
		synced := cache.WaitForCacheSync(wctx.Done(), reg.HasSynced)
		if len(preds) > 0 {
			if !synced {
				<-stopped
			}
			e.takeOver(w, preds, synced, send)
		}
		if synced {
			e.log.Info("informer synced", "watch", k.String())
		}
	})
	go func() {
		wg.Wait()
		close(w.done)
	}()
}

// takeOver makes w live in place of the watches it replaces: each of them
// cedes w's scope (from then on it reports nothing there; the last heir
// stops it), what it had delivered there is diffed with what w has seen,
// the difference is queued for the rules that saw it, and rules new to the
// resource get an initial ADDED for every object. When w was stopped before
// its initial list was through (synced is false), it only inherits their
// view of its scope, for its own successor.
func (e *Engine) takeOver(w *watch, preds []*watch, synced bool, send func(*delivery)) {
	old := newView()
	mine := scope{namespace: w.key.Namespace}
	mine.selector, _ = labels.Parse(w.key.Selector)
	for _, p := range preds {
		p.mu.Lock()
		for _, u := range p.view.objects {
			if mine.has(u) {
				old.keep(u)
			}
		}
		for uid, u := range p.view.deleted {
			if mine.has(u) {
				old.deleted[uid] = u
			}
		}
		old.maxRV = max(old.maxRV, p.view.maxRV)
		p.ceded = append(p.ceded, mine)
		p.heirs--
		last := p.heirs <= 0
		p.mu.Unlock()
		if last {
			e.finishWatch(p)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !synced {
		w.view = old
		return
	}
	deliveries, floors, final := takeOver(old, w.view)
	for _, d := range deliveries {
		send(d)
	}
	for _, u := range final.objects {
		send(&delivery{typ: config.Added, obj: u, initial: true, audience: newRules})
	}
	w.floors, w.view, w.live = floors, final, true
}

// stopWatch stops an informer and waits for its goroutines. Called with e.mu
// held.
func (e *Engine) stopWatch(w *watch) {
	delete(e.watches, w.key)
	e.finishWatch(w)
}

// finishWatch stops a watch's informer and waits for its goroutines (once:
// a watch replaced by several is finished by each of them).
func (e *Engine) finishWatch(w *watch) {
	w.stop.Do(func() {
		w.cancel()
		<-w.done
		e.stats.Informers.Add(-1)
		e.log.Info("informer stopped", "watch", w.key.String())
	})
}

func (e *Engine) stopAllWatches() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, w := range e.watches {
		e.stopWatch(w)
	}
}

// Watches lists the running informers (for status and tests).
func (e *Engine) Watches() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for k := range e.watches {
		out = append(out, k.String())
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
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ any, initial bool) {
			if !initial {
				e.trigger()
			}
		},
		UpdateFunc: func(_, _ any) { e.trigger() },
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
