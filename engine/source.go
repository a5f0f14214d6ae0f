package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/internal/object"
)

// watchKey identifies one informer: a resource, a namespace ("" = all),
// the label selector applied on the server ("" = none), and whether it
// caches objects whole or their metadata only.
type watchKey struct {
	GVR       schema.GroupVersionResource
	Namespace string
	Selector  string
	Bodies    bool
}

func (k watchKey) String() string {
	s := gvrString(k.GVR)
	if k.Namespace != "" {
		s += " in " + k.Namespace
	}
	if k.Selector != "" {
		s += " where " + k.Selector
	}
	if !k.Bodies {
		s += " (metadata only)"
	}
	return s
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
	marks  watchMarks
}

// watchWarnEvery bounds how often a failing watch is reported at WARN.
const watchWarnEvery = time.Minute

// startInformer starts one informer of rsc, live at once: its events pass
// the resource's ledger. Its goroutines end when ctx is done or it is
// stopped. Called with e.mu held.
func (e *Engine) startInformer(ctx context.Context, rsc *resource, k watchKey) {
	w := &informer{key: k, done: make(chan struct{})}
	w.inf = cache.NewSharedIndexInformerWithOptions(e.opts.Shard.filter(e.listWatch(w)), &object.Object{}, cache.SharedIndexInformerOptions{})
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
	l, gvr := rsc.ledger, gvrString(k.GVR)
	admit := func(typ config.EventType, o, old *object.Object, initial bool) {
		metrics.ObserveEvent(gvr, string(typ))
		l.admit(w, typ, o, old, initial)
	}
	wctx, cancel := context.WithCancel(ctx)
	reg, _ := w.inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			o, ok := obj.(*object.Object)
			if !ok {
				return
			}
			if initial && !e.pending.waitRoom(wctx) {
				return // the watch stopped: client-go drops what it had not handed over, too
			}
			admit(config.Added, o, nil, initial)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*object.Object)
			n, ok2 := newObj.(*object.Object)
			if !ok1 || !ok2 || o.ResourceVersion == n.ResourceVersion {
				return // a resync, not a change
			}
			admit(config.Updated, n, o, false)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if o, ok := obj.(*object.Object); ok {
				admit(config.Deleted, o, nil, false)
			}
		},
	})
	w.cancel = cancel
	rsc.watches[k] = w
	metrics.AddInformers(1)
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

// listWatch lists and watches one informer's scope, decoding what the
// server sends straight into Objects (see internal/object), and notes the
// resource version its cache is complete up to after each list: that of a
// list, or of the bookmark that ends the initial events of a watch-list.
func (e *Engine) listWatch(w *informer) cache.ListerWatcher {
	path := resourcePath(w.key.GVR, w.key.Namespace)
	selector := w.key.Selector
	opts := object.Options{KeepLastApplied: e.opts.KeepLastApplied, MetadataOnly: !w.key.Bodies}
	noteListed := func(rv string) {
		n, _ := object.ParseRV(rv)
		if w.listed.Swap(n) != 0 {
			// Its watch could not resume where it stopped (as on 410 Gone: the
			// server's history was compacted past it): the ledger turns
			// the new list into the changes since.
			e.log.Info("informer listed again", "watch", w.key.String(), "resource_version", rv)
		}
	}
	// get opens the response body of a list or watch of the scope.
	get := func(ctx context.Context, o *metav1.ListOptions) (io.ReadCloser, error) {
		o.LabelSelector = selector
		return e.raw.Get().AbsPath(path...).VersionedParams(o, metav1.ParameterCodec).Stream(ctx)
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			body, err := get(ctx, &o)
			if err != nil {
				return nil, err
			}
			defer body.Close()
			list, err := object.DecodeList(body, opts)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", w.key, err)
			}
			noteListed(list.ResourceVersion)
			return list, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
			o.Watch = true
			body, err := get(ctx, &o)
			if err != nil {
				return nil, err
			}
			wi := apiwatch.NewStreamWatcher(object.NewWatchDecoder(body, opts),
				apierrors.NewClientErrorReporter(http.StatusInternalServerError, http.MethodGet, "ClientWatchDecoding"))
			if o.SendInitialEvents == nil || !*o.SendInitialEvents {
				return wi, nil
			}
			return filterWatch(wi, func(ev apiwatch.Event) (apiwatch.Event, bool) {
				if o, ok := ev.Object.(*object.Object); ok && ev.Type == apiwatch.Bookmark &&
					o.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
					noteListed(o.ResourceVersion)
				}
				return ev, true
			}), nil
		},
	}
}

// resourcePath is the API path of a resource's collection, in namespace ns
// ("" = all namespaces).
func resourcePath(gvr schema.GroupVersionResource, ns string) []string {
	p := []string{"/apis", gvr.Group, gvr.Version}
	if gvr.Group == "" {
		p = []string{"/api", gvr.Version}
	}
	if ns != "" {
		p = append(p, "namespaces", ns)
	}
	return append(p, gvr.Resource)
}

// stopInformer stops an informer and waits until its handler calls are
// over. Called with e.mu held.
func (e *Engine) stopInformer(rsc *resource, w *informer) {
	delete(rsc.watches, w.key)
	if w.marks.busy() {
		rsc.retired = append(rsc.retired, w)
	}
	w.cancel()
	<-w.done
	metrics.AddInformers(-1)
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

// Synced reports, for the readiness probe, whether every informer the rules
// need has listed; the error names those that have not.
func (e *Engine) Synced() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var waiting []string
	for _, rsc := range e.resources {
		for k := range rsc.desired {
			if w := rsc.watches[k]; w == nil || !w.synced.Load() {
				waiting = append(waiting, k.String())
			}
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	sort.Strings(waiting)
	return fmt.Errorf("informers not synced: %s", strings.Join(waiting, ", "))
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
			if rv, ok := object.ParseRV(u.GetResourceVersion()); ok && rv > e.crdRV.Load() {
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

// stripManagedFields drops metadata.managedFields before the CRD watch
// caches a CustomResourceDefinition (the resources' watches decode objects
// without them: see listWatch).
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
