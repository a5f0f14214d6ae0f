// Package metrics is Faro's operations surface beside the watch pipeline:
// the Prometheus registry every stage reports into (informers, queue,
// rules, plugins, reloads, client-go's REST client), and the HTTP server
// that exposes it on /metrics with the /healthz and /readyz probes.
//
//	engine, rules, wasmhost, daemon ──Observe*/Set*──> Registry ──> /metrics
//	workers, control loop ──Heartbeat──┐
//	config, informers ──Condition/Checker──> Probes ──> /healthz, /readyz
//
// The metric functions are safe for concurrent use and cheap enough for
// the per-event path (one labelled counter lookup each). Label values are
// bounded: resources by group/version/resource, rules by their config id,
// plugins by name.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// RegistererGatherer is both halves of a Prometheus registry.
type RegistererGatherer interface {
	prometheus.Registerer
	prometheus.Gatherer
}

// Registry holds every metric Faro exports, with the Go runtime and
// process collectors, and client-go's REST client metrics. The server
// serves it on /metrics.
var Registry RegistererGatherer = prometheus.NewRegistry()

// Plugin call results, the values of faro_plugin_calls_total's result label.
const (
	PluginOK       = "ok"
	PluginError    = "error"    // the plugin returned an error
	PluginPanic    = "panic"    // the handler panicked
	PluginTrap     = "trap"     // the guest crashed
	PluginTimeout  = "timeout"  // the call ran past the plugin's timeout
	PluginOOM      = "oom"      // the instance hit its memory limit
	PluginOutput   = "output"   // output limits exceeded or a bad ABI status
	PluginCanceled = "canceled" // shutdown or a closed plugin ended the call
)

// Config reload results, the values of faro_config_reloads_total's result label.
const (
	ReloadOK      = "ok"
	ReloadRefused = "refused"
)

var (
	events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faro_events_total",
		Help: "Events taken from informers, by resource (group/version/resource) and type (ADDED, UPDATED, DELETED).",
	}, []string{"resource", "type"})
	matches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faro_matches_total",
		Help: "Events matched and reported, by rule (its config path).",
	}, []string{"rule"})
	queuePending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "faro_queue_pending",
		Help: "Events waiting in the per-object queues, including those being retried.",
	})
	processing = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "faro_event_processing_seconds",
		Help:    "Time from an event leaving its informer to its last handler finishing.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. ~131s
	})
	retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "faro_retries_total",
		Help: "Events sent back to the queue after a handler failed.",
	})
	dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "faro_dropped_total",
		Help: "Events dropped after their last retry.",
	})
	celErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faro_cel_errors_total",
		Help: "CEL evaluation errors (each counted as no match), by rule.",
	}, []string{"rule"})
	pluginCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faro_plugin_calls_total",
		Help: "Plugin calls, by plugin and result (ok, error, panic, trap, timeout, oom, output, canceled).",
	}, []string{"plugin", "result"})
	pluginDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "faro_plugin_duration_seconds",
		Help:    "Duration of plugin calls, by plugin.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 0.1ms .. ~26s
	}, []string{"plugin"})
	reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "faro_config_reloads_total",
		Help: "Config reloads, by result (ok: the new rules are live; refused: the old rules stay).",
	}, []string{"result"})
	informers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "faro_informers",
		Help: "Informers running.",
	})
	leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "faro_leader",
		Help: "1 on the replica that reports events, 0 on a standby.",
	})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		events, matches, queuePending, processing, retries, dropped, celErrors,
		pluginCalls, pluginDuration, reloads, informers, leader,
	)
	// Both results are exported from the start, so that a rate over them
	// is defined before the first reload.
	reloads.WithLabelValues(ReloadOK)
	reloads.WithLabelValues(ReloadRefused)
	registerClientGo(Registry)
}

// ObserveEvent counts one event taken from an informer. resource is the
// group/version/resource as log lines show it (v1/configmaps,
// apps/v1/deployments); eventType is ADDED, UPDATED or DELETED.
func ObserveEvent(resource, eventType string) {
	events.WithLabelValues(resource, eventType).Inc()
}

// ObserveMatch counts one event reported for rule.
func ObserveMatch(rule string) {
	rulesSeen.add(rule)
	matches.WithLabelValues(rule).Inc()
}

// ObserveCELError counts one CEL evaluation error of rule.
func ObserveCELError(rule string) {
	rulesSeen.add(rule)
	celErrors.WithLabelValues(rule).Inc()
}

// AddPending moves faro_queue_pending by delta: +1 when an event is queued,
// -1 when it leaves the queue (delivered or dropped).
func AddPending(delta int) { queuePending.Add(float64(delta)) }

// ObserveProcessed records that an event received at since has been
// through its last handler.
func ObserveProcessed(since time.Time) { processing.Observe(time.Since(since).Seconds()) }

// ObserveRetry counts one event sent back to the queue.
func ObserveRetry() { retries.Inc() }

// ObserveDrop counts one event dropped after its last retry.
func ObserveDrop() { dropped.Inc() }

// AddInformers moves faro_informers by delta: +1 when an informer starts,
// -1 when it stops.
func AddInformers(delta int) { informers.Add(float64(delta)) }

// ObserveReload counts one config reload: ok when the new rules went live,
// refused when the old ones stay.
func ObserveReload(ok bool) {
	if ok {
		reloads.WithLabelValues(ReloadOK).Inc()
		return
	}
	reloads.WithLabelValues(ReloadRefused).Inc()
}

// SetLeader says whether this replica reports events.
func SetLeader(reporting bool) {
	if reporting {
		leader.Set(1)
		return
	}
	leader.Set(0)
}

// ObservePluginCall records one plugin call, its result (one of the
// Plugin* constants) and how long it took.
func ObservePluginCall(plugin, result string, took time.Duration) {
	pluginCalls.WithLabelValues(plugin, result).Inc()
	pluginDuration.WithLabelValues(plugin).Observe(took.Seconds())
}

// RetainRules drops the series of rules that are not in live (rules a
// reload removed), so that label values stay bounded by the config.
func RetainRules(live []string) {
	keep := make(map[string]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	for _, id := range rulesSeen.dropUnless(keep) {
		matches.DeleteLabelValues(id)
		celErrors.DeleteLabelValues(id)
	}
}

// rulesSeen is every rule id that has a series.
var rulesSeen ruleSet

type ruleSet struct {
	mu  sync.RWMutex
	ids map[string]bool
}

func (s *ruleSet) add(id string) {
	s.mu.RLock()
	ok := s.ids[id]
	s.mu.RUnlock()
	if ok {
		return
	}
	s.mu.Lock()
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
	s.mu.Unlock()
}

// dropUnless forgets the ids not in keep and returns them.
func (s *ruleSet) dropUnless(keep map[string]bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []string
	for id := range s.ids {
		if !keep[id] {
			gone = append(gone, id)
			delete(s.ids, id)
		}
	}
	return gone
}
