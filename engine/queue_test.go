package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/internal/object"
	"github.com/faro-dev/faro/rules"
)

var cmGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// recorder is a Handler that records the order in which it sees events and
// fails on demand.
type recorder struct {
	mu       sync.Mutex
	seen     map[string][]string // object -> resource versions, in order
	inFlight map[string]bool
	overlap  []string
	fail     func(m *Matched, calls int) error
	calls    map[string]int // object/rv -> calls
	order    []string       // object@rv of every handled event, in order
	gate     chan struct{}  // when set, every call waits for it first
}

func (r *recorder) Handle(_ context.Context, m *Matched, plugin string) error {
	if r.gate != nil {
		<-r.gate
	}
	key := m.Object.GetName()
	r.mu.Lock()
	if r.inFlight[key] {
		r.overlap = append(r.overlap, key)
	}
	r.inFlight[key] = true
	id := key + "@" + m.Object.GetResourceVersion()
	r.calls[id]++
	calls := r.calls[id]
	r.mu.Unlock()

	time.Sleep(50 * time.Microsecond) // widen the window for overlapping workers

	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight[key] = false
	if r.fail != nil {
		if err := r.fail(m, calls); err != nil {
			return err
		}
	}
	r.seen[key] = append(r.seen[key], m.Object.GetResourceVersion())
	r.order = append(r.order, key+"@"+m.Object.GetResourceVersion())
	return nil
}

func newRecorder() *recorder {
	return &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{}}
}

// newTestEngine builds an engine with one rule on configmaps that hands
// every event to plugin "rec", and starts its workers.
func newTestEngine(t testing.TB, h Handler, workers, maxRetries int) (*Engine, *bytes.Buffer) {
	t.Helper()
	cfg, err := config.Parse([]byte(`
plugins:
  - name: rec
    path: rec.wasm
resources:
  - gvr: v1/configmaps
    plugins: [rec]
`), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(cfg, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var outMu sync.Mutex
	events := hclog.New(&hclog.LoggerOptions{Output: &lockedWriter{w: &out, mu: &outMu}, Level: hclog.Info})
	e, err := New(Options{
		Config: &rest.Config{Host: "http://127.0.0.1:1"}, Events: events, Diag: hclog.NewNullLogger(),
		Handler: h, Workers: workers, MaxRetries: maxRetries, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := newResourceLedger(cmGVR, "ConfigMap", e.enqueue, e.log.Warn)
	l.bind(set.Rules)
	e.resources[cmGVR] = &resource{ledger: l}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for e.processNext(context.Background()) {
			}
		})
	}
	t.Cleanup(func() {
		e.queue.ShutDownWithDrain()
		wg.Wait()
	})
	return e, &out
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// admit passes an event of the test engine's configmaps through its ledger.
func admit(e *Engine, typ config.EventType, u *object.Object) {
	e.resources[cmGVR].ledger.admit(nil, typ, u, nil, false)
}

// cm is a ConfigMap ns/name without a uid at resource version rv.
func cm(name string, rv int) *object.Object { return obj(name, "", fmt.Sprint(rv)) }

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestQueueKeepsPerObjectOrder: many objects, many events each, several
// workers: every event is delivered, in order per object, and no object is
// ever handled by two workers at once.
func TestQueueKeepsPerObjectOrder(t *testing.T) {
	const objects, perObject = 20, 25
	rec := &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{}}
	e, _ := newTestEngine(t, rec, 4, 5)
	for i := range perObject {
		for o := range objects {
			typ := config.Updated
			if i == 0 {
				typ = config.Added
			}
			admit(e, typ, cm(fmt.Sprintf("cm-%d", o), i+1))
		}
	}
	waitUntil(t, "all events", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		n := 0
		for _, s := range rec.seen {
			n += len(s)
		}
		return n == objects*perObject
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.overlap) > 0 {
		t.Errorf("objects handled by two workers at once: %v", rec.overlap)
	}
	for o := range objects {
		seq := rec.seen[fmt.Sprintf("cm-%d", o)]
		for i, rv := range seq {
			if rv != fmt.Sprint(i+1) {
				t.Fatalf("cm-%d: events out of order: %v", o, seq)
			}
		}
	}
}

// TestQueueRetriesThenResumes: a failing handler is retried with backoff;
// the matched line is logged once; the object's next event waits behind it.
func TestQueueRetriesThenResumes(t *testing.T) {
	rec := &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{},
		fail: func(m *Matched, calls int) error {
			if m.Object.GetResourceVersion() == "1" && calls <= 2 {
				return errors.New("transient")
			}
			return nil
		}}
	e, out := newTestEngine(t, rec, 2, 5)
	retries, dropped := counter(t, "faro_retries_total"), counter(t, "faro_dropped_total")
	admit(e, config.Added, cm("a", 1))
	admit(e, config.Updated, cm("a", 2))
	waitUntil(t, "both events", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seen["a"]) == 2
	})
	rec.mu.Lock()
	if got := strings.Join(rec.seen["a"], ","); got != "1,2" {
		t.Errorf("order = %s, want 1,2", got)
	}
	rec.mu.Unlock()
	if n := counter(t, "faro_retries_total") - retries; n != 2 {
		t.Errorf("retries = %v, want 2", n)
	}
	if n := counter(t, "faro_dropped_total") - dropped; n != 0 {
		t.Errorf("dropped = %v, want 0", n)
	}
	waitUntil(t, "log lines", func() bool { return strings.Count(out.String(), "CONFIG [") >= 2 })
	if n := strings.Count(out.String(), "CONFIG [ADDED] v1/configmaps ns/a"); n != 1 {
		t.Errorf("ADDED logged %d times, want once despite retries:\n%s", n, out.String())
	}
}

// TestQueueDropsAfterMaxRetries: an event that keeps failing is dropped and
// counted, and the object's later events still flow.
func TestQueueDropsAfterMaxRetries(t *testing.T) {
	rec := &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{},
		fail: func(m *Matched, _ int) error {
			if m.Object.GetResourceVersion() == "1" {
				return errors.New("permanent")
			}
			return nil
		}}
	e, _ := newTestEngine(t, rec, 1, 3)
	dropped := counter(t, "faro_dropped_total")
	admit(e, config.Added, cm("b", 1))
	admit(e, config.Updated, cm("b", 2))
	waitUntil(t, "the second event", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seen["b"]) == 1
	})
	if n := counter(t, "faro_dropped_total") - dropped; n != 1 {
		t.Errorf("dropped = %v, want 1", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls["b@1"] != 4 {
		t.Errorf("failing event tried %d times, want 1 + 3 retries", rec.calls["b@1"])
	}
	if rec.seen["b"][0] != "2" {
		t.Errorf("seen %v, want the second event delivered", rec.seen["b"])
	}
}

type warnings struct{ lines [][]any }

func (w *warnings) Warn(msg string, args ...any) {
	w.lines = append(w.lines, append([]any{msg}, args...))
}

// TestWarningsAreRateLimited: a bad rule on a busy resource logs once per
// interval, with the number of errors suppressed in between.
func TestWarningsAreRateLimited(t *testing.T) {
	c := limitedLog{every: 50 * time.Millisecond}
	var w warnings
	for range 5 {
		c.warn(&w, "resources[0]", "CEL evaluation failed", "object", "ns/a")
	}
	c.warn(&w, "resources[1]", "CEL evaluation failed", "object", "ns/a") // other rules have their own budget
	if len(w.lines) != 2 {
		t.Fatalf("logged %d lines, want 2: %v", len(w.lines), w.lines)
	}
	time.Sleep(60 * time.Millisecond)
	c.warn(&w, "resources[0]", "CEL evaluation failed", "object", "ns/b")
	if len(w.lines) != 3 {
		t.Fatalf("logged %d lines after the interval, want 3", len(w.lines))
	}
	last := fmt.Sprint(w.lines[2])
	if !strings.Contains(last, "suppressed_since_last 4") {
		t.Errorf("last line %s does not count the 4 suppressed errors", last)
	}
}

// TestQueueBackoffHoldsUnderNewEvents: new events for an object that is
// backing off after a failure do not wake it early; the failing event gets
// its retries spread over the backoff, then is dropped, and the rest flow.
func TestQueueBackoffHoldsUnderNewEvents(t *testing.T) {
	var first, dropped time.Time
	rec := &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{},
		fail: func(m *Matched, calls int) error {
			if m.Object.GetResourceVersion() != "1" {
				if dropped.IsZero() {
					dropped = time.Now()
				}
				return nil
			}
			if calls == 1 {
				first = time.Now()
			}
			return errors.New("permanent")
		}}
	e, _ := newTestEngine(t, rec, 2, 3)
	admit(e, config.Added, cm("c", 1))
	for i := 2; i <= 40; i++ {
		time.Sleep(time.Millisecond)
		admit(e, config.Updated, cm("c", i))
	}
	waitUntil(t, "all later events", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seen["c"]) == 39
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.calls["c@1"] != 4 {
		t.Errorf("failing event tried %d times, want 1 + 3 retries", rec.calls["c@1"])
	}
	// Backoff is 1ms, 2ms, 4ms (capped at 5ms): at least 7ms must pass
	// between the first failure and the drop, however many events arrived.
	if gap := dropped.Sub(first); gap < 7*time.Millisecond {
		t.Errorf("failing event dropped %v after its first try; the backoff was skipped", gap)
	}
}

// TestQueueNoRetries: MaxRetries 0 drops a failing event at once.
func TestQueueNoRetries(t *testing.T) {
	rec := &recorder{seen: map[string][]string{}, inFlight: map[string]bool{}, calls: map[string]int{},
		fail: func(*Matched, int) error { return errors.New("no") }}
	e, _ := newTestEngine(t, rec, 1, 0)
	retries, dropped := counter(t, "faro_retries_total"), counter(t, "faro_dropped_total")
	admit(e, config.Added, cm("d", 1))
	waitUntil(t, "the drop", func() bool { return counter(t, "faro_dropped_total")-dropped == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if n := counter(t, "faro_retries_total") - retries; rec.calls["d@1"] != 1 || n != 0 {
		t.Errorf("calls = %d, retries = %v; want 1 and 0", rec.calls["d@1"], n)
	}
}

// TestQueueCompactsABacklog: past the per-object limit, consecutive
// UPDATEDs of a hot object collapse, so that its backlog stays bounded; the
// first events stay as they were, the final state is delivered, and the
// collapsed UPDATED runs from the oldest old state to the newest state.
func TestQueueCompactsABacklog(t *testing.T) {
	rec := newRecorder()
	rec.gate = make(chan struct{})
	e, _ := newTestEngine(t, rec, 1, 0)
	e.pending.max = 5
	var olds []string
	e.opts.Handler = handlerFunc(func(ctx context.Context, m *Matched, p string) error {
		if m.OldObject != nil {
			olds = append(olds, m.OldObject.GetResourceVersion())
		}
		return rec.Handle(ctx, m, p)
	})
	prev := cm("hot", 1)
	admit(e, config.Added, prev)
	for rv := 2; rv <= 100; rv++ {
		u := cm("hot", rv)
		e.resources[cmGVR].ledger.admit(nil, config.Updated, u, prev, false)
		prev = u
	}
	if n := e.pending.len(); n > 5 {
		t.Errorf("backlog of %d events, want at most 5", n)
	}
	close(rec.gate)
	waitUntil(t, "the final state", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		s := rec.seen["hot"]
		return len(s) > 0 && s[len(s)-1] == "100"
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := strings.Join(rec.seen["hot"], ","); got != "1,2,3,4,100" {
		t.Errorf("delivered %s, want 1,2,3,4,100", got)
	}
	if got := strings.Join(olds, ","); got != "1,2,3,4" {
		t.Errorf("old states %s, want 1,2,3,4 (the collapsed UPDATED starts at 4)", got)
	}
	if n := e.stats.Compacted.Load(); n != 95 {
		t.Errorf("compacted %d, want 95", n)
	}
}

// TestQueueIsFair: a worker takes one event per key, so an object with a
// long backlog does not hold it while others wait.
func TestQueueIsFair(t *testing.T) {
	rec := newRecorder()
	rec.gate = make(chan struct{})
	e, _ := newTestEngine(t, rec, 1, 0)
	admit(e, config.Added, cm("hot", 1))
	for rv := 2; rv <= 20; rv++ {
		admit(e, config.Updated, cm("hot", rv))
	}
	admit(e, config.Added, cm("cold", 21))
	close(rec.gate)
	waitUntil(t, "every event", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.order) == 21
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if i := slices.Index(rec.order, "cold@21"); i < 0 || i > 2 {
		t.Errorf("cold object handled at position %d of %v; want right after the hot object's first event", i, rec.order)
	}
}

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, m *Matched, plugin string) error

func (f handlerFunc) Handle(ctx context.Context, m *Matched, plugin string) error {
	return f(ctx, m, plugin)
}

// counter reads a counter without labels from Faro's metrics registry.
func counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
