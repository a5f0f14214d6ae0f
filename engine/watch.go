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

	// delivered is what this watch's handler has queued, by uid: the last
	// state of every object it reported and did not report deleted. A
	// successor watch starts from it (see handover).
	mu        sync.Mutex
	delivered map[types.UID]*unstructured.Unstructured
}

func (w *watch) record(u *unstructured.Unstructured, deleted bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if deleted {
		delete(w.delivered, u.GetUID())
	} else {
		w.delivered[u.GetUID()] = u
	}
}

// handover is what a replaced watch passes to its successor: the objects it
// delivered (within the successor's scope) and the definitions of the rules
// that saw them. The successor's initial list is diffed against it, so that
// those rules get exactly what changed in between (UPDATED, DELETED, ADDED
// for newcomers) and no second initial ADDED, while rules new to the
// resource get their initial events.
type handover struct {
	seen    map[types.UID]*unstructured.Unstructured
	carried map[string]bool // ruleKey of the rules that saw them
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
// Before Run, it only records set.
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

	// Watches no longer wanted stop; what they delivered is handed to the
	// new watches of the same resource (a replacement: its namespaces or
	// selector changed).
	seen := map[schema.GroupVersionResource]map[types.UID]*unstructured.Unstructured{}
	for k, w := range e.watches {
		if desired[k] {
			continue
		}
		e.stopWatch(w)
		res.Stopped = append(res.Stopped, k.String())
		if seen[k.GVR] == nil {
			seen[k.GVR] = map[types.UID]*unstructured.Unstructured{}
		}
		w.mu.Lock()
		for uid, u := range w.delivered {
			seen[k.GVR][uid] = u
		}
		w.mu.Unlock()
	}
	for k := range desired {
		if _, ok := e.watches[k]; ok {
			continue
		}
		var h *handover
		if old, replaced := seen[k.GVR]; replaced {
			h = &handover{seen: map[types.UID]*unstructured.Unstructured{}, carried: map[string]bool{}}
			sel, _ := labels.Parse(k.Selector)
			for uid, u := range old {
				if (k.Namespace == "" || u.GetNamespace() == k.Namespace) && sel.Matches(labels.Set(u.GetLabels())) {
					h.seen[uid] = u
				}
			}
			for _, r := range prev.byGVR[k.GVR] {
				h.carried[ruleKey(r)] = true
			}
		}
		e.startWatch(ctx, k, h)
		res.Started = append(res.Started, k.String())
	}
	sort.Strings(res.Started)
	sort.Strings(res.Stopped)
	return res
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
// the watch is stopped. h is non-nil when the watch replaces others of the
// same resource. Called with e.mu held.
func (e *Engine) startWatch(ctx context.Context, k watchKey, h *handover) {
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
	w := &watch{key: k, done: make(chan struct{}), delivered: map[types.UID]*unstructured.Unstructured{}}
	gvr, isNS := k.GVR, isNamespaceResource(k.GVR)
	send := func(d *delivery) {
		d.gvr, d.isNS = gvr, isNS
		if h != nil {
			d.carried = h.carried
		}
		e.enqueue(d)
	}
	var listed sync.Map // uids of the initial list, for the handover diff
	reg, _ := inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return
			}
			w.record(u, false)
			prev := h.prior(u, initial)
			switch {
			case prev == nil:
				send(&delivery{typ: config.Added, obj: u, initial: initial})
			case prev.GetResourceVersion() == u.GetResourceVersion():
				listed.Store(u.GetUID(), true)
				send(&delivery{typ: config.Added, obj: u, initial: true, audience: newRules})
			default:
				listed.Store(u.GetUID(), true)
				send(&delivery{typ: config.Updated, obj: u, old: prev, audience: carriedRules})
				send(&delivery{typ: config.Added, obj: u, initial: true, audience: newRules})
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*unstructured.Unstructured)
			n, ok2 := newObj.(*unstructured.Unstructured)
			if !ok1 || !ok2 || o.GetResourceVersion() == n.GetResourceVersion() {
				return // a resync, not a change
			}
			w.record(n, false)
			send(&delivery{typ: config.Updated, obj: n, old: o})
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.record(u, true)
				send(&delivery{typ: config.Deleted, obj: u})
			}
		},
	})
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	e.watches[k] = w
	e.stats.Informers.Add(1)
	e.log.Info("informer started", "watch", k.String())
	var wg sync.WaitGroup
	wg.Go(func() { inf.RunWithContext(wctx) })
	wg.Go(func() {
		if !cache.WaitForCacheSync(wctx.Done(), reg.HasSynced) {
			return
		}
		// Objects the replaced watch delivered that are not in the new
		// initial list were deleted in between.
		for uid, u := range h.gone(&listed) {
			w.mu.Lock()
			_, back := w.delivered[uid]
			w.mu.Unlock()
			if !back {
				send(&delivery{typ: config.Deleted, obj: u, audience: carriedRules})
			}
		}
		e.log.Info("informer synced", "watch", k.String())
	})
	go func() {
		wg.Wait()
		close(w.done)
	}()
}

// prior returns the state in which the replaced watch last delivered the
// object of an initial ADDED, or nil (no handover, not initial, or an object
// the replaced watch never reported).
func (h *handover) prior(u *unstructured.Unstructured, initial bool) *unstructured.Unstructured {
	if h == nil || !initial {
		return nil
	}
	return h.seen[u.GetUID()]
}

// gone returns the handed-over objects that the new initial list lacks.
func (h *handover) gone(listed *sync.Map) map[types.UID]*unstructured.Unstructured {
	if h == nil {
		return nil
	}
	out := map[types.UID]*unstructured.Unstructured{}
	for uid, u := range h.seen {
		if _, ok := listed.Load(uid); !ok {
			out[uid] = u
		}
	}
	return out
}

// stopWatch stops an informer and waits for its goroutines. Called with e.mu
// held.
func (e *Engine) stopWatch(w *watch) {
	w.cancel()
	<-w.done
	delete(e.watches, w.key)
	e.stats.Informers.Add(-1)
	e.log.Info("informer stopped", "watch", w.key.String())
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
