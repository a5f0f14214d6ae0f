// Package engine is the middle of Faro's pipeline: it discovers what the API
// server serves, keeps one informer per distinct watch the rules need
// (following CRDs as they come and go; its cache holds objects in the
// compact form of internal/object), passes every event through the
// delivery ledger of its resource (the one record of what the rules were
// told, optionally kept across restarts by a Checkpoint), queues what the
// ledger admits in order per object on a rate-limited workqueue, matches it
// against the rules bound when it was admitted and hands matched events to
// the output and the plugin handler.
//
//	discovery + CRD watch ──> informers (source.go) ──> ledger (ledger.go)
//	  ──> per-object queue + workers (queue.go) ──> log + Handler
package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/rules"
)

// Matched is one event selected by one rule: what the output logs and what
// plugins receive.
type Matched struct {
	Type      config.EventType
	GVR       schema.GroupVersionResource
	Object    *unstructured.Unstructured
	OldObject *unstructured.Unstructured
	Initial   bool
	Rule      *rules.Rule
}

// GVRString renders the resource as log lines show it: v1/configmaps,
// apps/v1/deployments.
func (m *Matched) GVRString() string { return gvrString(m.GVR) }

// Key renders the object as log lines show it: ns/name, or name.
func (m *Matched) Key() string { return describe(m.Object.GetNamespace(), m.Object.GetName()) }

// Handler is the plugin stage: it receives each matched event once per
// plugin the matching rule names, after the event was logged. An error sends
// the event back to the queue to be retried with backoff.
type Handler interface {
	Handle(ctx context.Context, m *Matched, plugin string) error
}

// Options configures New. Config and Logs are required.
type Options struct {
	Config *rest.Config
	// Events receives matched-event lines; Diag diagnostics.
	Events, Diag hclog.Logger
	// JSON makes matched-event lines carry every field as a stable key.
	JSON bool
	// Handler receives matched events for the plugins of their rule.
	Handler Handler
	// Workers is how many events are processed at once (default 4).
	Workers int
	// MaxRetries is how often a failing event is retried before it is
	// dropped; 0 drops it at its first failure.
	MaxRetries int
	// RetryBase and RetryMax bound the exponential backoff between retries
	// (defaults 100ms and 30s).
	RetryBase, RetryMax time.Duration
	// DrainTimeout bounds how long shutdown waits for queued events
	// (default 10s).
	DrainTimeout time.Duration
	// PendingRecheck is how often discovery is repeated while a configured
	// resource is not served (default 5s); CRD events trigger it at once.
	PendingRecheck time.Duration
	// MaxPendingPerObject bounds one object's backlog (default 1000): past
	// it, consecutive UPDATEDs are collapsed into one.
	MaxPendingPerObject int
	// KeepLastApplied keeps the kubectl last-applied-configuration
	// annotation in cached objects (it is stripped by default).
	KeepLastApplied bool
	// Shard, when its Total is above 1, restricts the engine to its share
	// of every resource's objects.
	Shard Shard
	// Standby starts the engine without delivering: it queues what it
	// would deliver and drops what the leader's marks cover (Trim) until
	// Lead. Such an engine does not drain at shutdown either: the next
	// leader delivers what it leaves.
	Standby bool
	// Progress, when set, is told when a worker or the control loop begins
	// and ends a unit of work (the liveness probe).
	Progress Progress
	// Checkpoint, when set, keeps the ledger across restarts: shutdown then
	// leaves what is not delivered for the next start instead of draining.
	Checkpoint Checkpoint
}

// Progress brackets units of work, so that a stuck one can be seen.
type Progress interface {
	Begin() metrics.Token
	End(metrics.Token)
}

// noProgress is the Progress of an engine without a liveness probe.
type noProgress struct{}

func (noProgress) Begin() metrics.Token { return 0 }
func (noProgress) End(metrics.Token)    {}

func (o *Options) validate() error {
	var errs []error
	if o.Config == nil {
		errs = append(errs, errors.New("engine: Options.Config is required"))
	}
	if o.Events == nil || o.Diag == nil {
		errs = append(errs, errors.New("engine: Options.Events and Options.Diag are required"))
	}
	if o.Shard.Total < 0 || o.Shard.Index < 0 || (o.Shard.Total > 0 && o.Shard.Index >= o.Shard.Total) {
		errs = append(errs, fmt.Errorf("engine: shard %d of %d: want 0 <= shard < total", o.Shard.Index, o.Shard.Total))
	}
	if o.Workers < 0 || o.MaxRetries < 0 {
		errs = append(errs, errors.New("engine: Workers and MaxRetries must not be negative"))
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
	if o.PendingRecheck <= 0 {
		o.PendingRecheck = 5 * time.Second
	}
	if o.MaxPendingPerObject <= 0 {
		o.MaxPendingPerObject = 1000
	}
	if o.Progress == nil {
		o.Progress = noProgress{}
	}
	return errors.Join(errs...)
}

// Stats are the engine's counters that have no metric (the others are
// Prometheus metrics: see internal/metrics).
type Stats struct {
	Unprocessed atomic.Uint64 // events still queued when shutdown ended
	Compacted   atomic.Uint64 // UPDATEDs collapsed into a later one (backlog limit)
	Rediscovers atomic.Uint64 // discovery runs
}

// Engine runs the watch pipeline.
type Engine struct {
	opts  Options
	log   hclog.Logger
	dyn   dynamic.Interface // the CRD watch
	raw   rest.Interface    // the resources' lists and watches (see listWatch)
	disc  discovery.DiscoveryInterface
	stats Stats

	queue   workqueue.TypedRateLimitingInterface[*pendingObj]
	pending pendingEvents

	rules      atomic.Pointer[rules.Set]
	kick       chan struct{} // asks the control loop to rediscover and reconcile
	generation atomic.Uint64 // bumped on every discovery
	crdRV      atomic.Uint64 // newest CRD resource version seen
	stopping   atomic.Bool   // shutdown: workers take no new event
	lead       chan struct{} // closed when the engine delivers (see Lead)
	leadOnce   sync.Once
	bg         sync.WaitGroup

	mu        sync.Mutex // guards the fields below (control loop, Apply, informers syncing)
	resources map[schema.GroupVersionResource]*resource
	index     *resourceIndex
	// appeared dates the resources a rediscovery found new, by the CRD
	// resource version seen then.
	appeared map[schema.GroupVersionResource]uint64
	pendErr  map[string]string // rule ID -> why it is not watched (logged once)
	closed   bool              // set at shutdown: no new watches

	warnings limitedLog
}

// New validates opts and builds an engine; nothing runs until Run.
func New(opts Options) (*Engine, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("engine: dynamic client: %w", err)
	}
	raw, err := rawClient(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("engine: REST client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("engine: discovery client: %w", err)
	}
	e := &Engine{
		opts:      opts,
		log:       opts.Diag,
		dyn:       dyn,
		raw:       raw,
		disc:      disc,
		kick:      make(chan struct{}, 1),
		lead:      make(chan struct{}),
		resources: map[schema.GroupVersionResource]*resource{},
		appeared:  map[schema.GroupVersionResource]uint64{},
		pendErr:   map[string]string{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[*pendingObj](opts.RetryBase, opts.RetryMax),
			workqueue.TypedRateLimitingQueueConfig[*pendingObj]{Name: "faro"},
		),
	}
	e.pending.init(opts.MaxPendingPerObject)
	e.warnings.every = 10 * time.Second
	if !opts.Standby {
		e.Lead()
	}
	return e, nil
}

// rawClient returns a client for requests whose responses the engine
// decodes itself: JSON, so that objects are decoded once, into their
// cached form.
func rawClient(cfg *rest.Config) (rest.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.AcceptContentTypes = runtime.ContentTypeJSON
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	return rest.UnversionedRESTClientFor(c)
}

// Stats returns the engine's live counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Discovery returns the engine's discovery client (for schema lookups).
func (e *Engine) Discovery() discovery.DiscoveryInterface { return e.disc }

// Run discovers the API, starts the informers the current rules need and the
// workers, and processes events until ctx is done. It then stops the
// informers and, without a Checkpoint, delivers what is queued or backing
// off within DrainTimeout; with one, it leaves that for the next start. The
// wait for handlers in flight is bounded too. It fails fast when the API
// server cannot be reached at start.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	discovered := e.index != nil
	e.mu.Unlock()
	if !discovered {
		if err := e.Discover(); err != nil {
			e.queue.ShutDown()
			return err
		}
	}

	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	e.reconcile(watchCtx)
	crdDone := e.watchCRDs(watchCtx)
	if e.opts.Checkpoint != nil {
		e.bg.Go(func() { e.keepSince(watchCtx) })
	}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	var workers sync.WaitGroup
	for range e.opts.Workers {
		workers.Go(func() {
			select {
			case <-e.lead:
			case <-watchCtx.Done():
				return // a standby stopped before it led
			}
			for e.processNext(workCtx) {
			}
		})
	}

	e.controlLoop(watchCtx)

	// Shutdown: no new events, then deliver what is queued (the queue stays
	// open meanwhile, so that events backing off are retried).
	stopWatches()
	e.stopAllWatches()
	<-crdDone
	e.bg.Wait()
	deadline := time.Now().Add(e.opts.DrainTimeout)
	if e.opts.Checkpoint == nil && !e.opts.Standby {
		for e.pending.len() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Workers stop at their next event; handlers in flight get until the
	// deadline (at least a second), then their context is cancelled.
	e.stopping.Store(true)
	e.pending.bound(false)
	e.queue.ShutDown()
	if !waitTimeout(&workers, max(time.Until(deadline), time.Second)) {
		stopWork()
		if !waitTimeout(&workers, time.Second) {
			e.log.Warn("shutdown: handlers still running after the drain timeout; leaving them", "drain_timeout", e.opts.DrainTimeout)
		}
	}
	if left := e.pending.len(); left > 0 {
		e.stats.Unprocessed.Add(uint64(left))
		if e.opts.Checkpoint != nil {
			e.log.Info("shutdown: events not delivered yet are delivered after the restart", "count", left)
		} else {
			e.log.Warn("shutdown: events left unprocessed", "count", left, "drain_timeout", e.opts.DrainTimeout)
		}
	}
	return nil
}

// waitTimeout waits for wg at most d and reports whether it is done.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Discover enumerates the API server's resources. Run does it when it has
// not been done; callers that need KindFor before Run (to type-check CEL
// against schemas) call it first. It fails when the server cannot be reached.
func (e *Engine) Discover() error {
	idx, err := discover(e.disc)
	if idx == nil {
		return fmt.Errorf("discover API resources at %s: %w", e.opts.Config.Host, err)
	}
	if err != nil {
		e.log.Warn("discovery incomplete", "error", err)
	}
	e.log.Info("discovered API resources", "watchable", idx.count())
	e.setIndex(idx)
	return nil
}

func (e *Engine) setIndex(idx *resourceIndex) {
	e.mu.Lock()
	if e.index != nil {
		for gvr := range idx.byGVR {
			if _, known := e.index.byGVR[gvr]; !known {
				e.appeared[gvr] = e.crdRV.Load()
			}
		}
	}
	e.index = idx
	e.mu.Unlock()
	e.generation.Add(1)
}

// DiscoveryGeneration changes every time the engine rediscovers the API;
// anything derived from discovery (schemas) is stale once it moved.
func (e *Engine) DiscoveryGeneration() uint64 { return e.generation.Load() }

// KindFor resolves a configured resource to its kind on the last discovery.
func (e *Engine) KindFor(ref config.ResourceRef) (schema.GroupVersionKind, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.index == nil {
		return schema.GroupVersionKind{}, false
	}
	api, err := e.index.resolve(ref)
	if err != nil {
		return schema.GroupVersionKind{}, false
	}
	return api.GVR.GroupVersion().WithKind(api.Kind), true
}

// controlLoop rediscovers and reconciles when asked (CRD changes, watch
// errors, Apply) and, while some rule's resource is not served, every
// PendingRecheck.
func (e *Engine) controlLoop(ctx context.Context) {
	recheck := time.NewTicker(e.opts.PendingRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			// Let a burst of CRD events settle into one discovery.
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		case <-recheck.C:
			e.mu.Lock()
			waiting := len(e.pendErr) > 0
			e.mu.Unlock()
			if !waiting {
				continue
			}
		}
		e.rediscover(ctx)
	}
}
