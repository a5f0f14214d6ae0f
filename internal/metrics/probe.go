package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Checker is one health or readiness check: nil when it passes, else why
// not.
type Checker interface {
	Check() error
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func() error

// Check implements Checker.
func (f CheckerFunc) Check() error { return f() }

// Condition is a readiness condition someone else sets: unmet with the
// reason given to NewCondition until Set(nil).
type Condition struct {
	mu  sync.Mutex
	err error
}

// NewCondition returns a condition that fails with reason until Set.
func NewCondition(reason string) *Condition {
	return &Condition{err: errors.New(reason)}
}

// Set records the condition's state: nil meets it.
func (c *Condition) Set(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Check implements Checker.
func (c *Condition) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Heartbeat tells whether a loop makes progress. The loop brackets each
// unit of work with Begin and End; a loop waiting for work is healthy, one
// that began a unit more than stallAfter ago and has not ended it is stuck.
// A pool of workers shares one Heartbeat: each Begin has its own token.
type Heartbeat struct {
	stallAfter time.Duration
	now        func() time.Time

	mu     sync.Mutex
	next   uint64
	inWork map[uint64]time.Time
}

// Token identifies one unit of work begun on a Heartbeat.
type Token uint64

// NewHeartbeat returns a Heartbeat that fails once a unit of work has run
// longer than stallAfter.
func NewHeartbeat(stallAfter time.Duration) *Heartbeat {
	return &Heartbeat{stallAfter: stallAfter, now: time.Now, inWork: map[uint64]time.Time{}}
}

// Begin marks the start of a unit of work.
func (h *Heartbeat) Begin() Token {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	h.inWork[h.next] = h.now()
	return Token(h.next)
}

// End marks the unit of work t as finished.
func (h *Heartbeat) End(t Token) {
	h.mu.Lock()
	delete(h.inWork, uint64(t))
	h.mu.Unlock()
}

// Check implements Checker: it fails when a unit of work has been running
// longer than stallAfter.
func (h *Heartbeat) Check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	now, stuck, oldest := h.now(), 0, time.Duration(0)
	for _, began := range h.inWork {
		if d := now.Sub(began); d > h.stallAfter {
			stuck++
			oldest = max(oldest, d)
		}
	}
	if stuck > 0 {
		return fmt.Errorf("%d of %d units of work running longer than %v (oldest %v)", stuck, len(h.inWork), h.stallAfter, oldest.Round(time.Millisecond))
	}
	return nil
}

// Probes holds the named checks behind /healthz (is the process working)
// and /readyz (can it do its job). A nil *Probes takes no checks, so that
// code feeding it runs unchanged without a probe server.
type Probes struct {
	mu          sync.Mutex
	live, ready []namedCheck
}

type namedCheck struct {
	name string
	c    Checker
}

// NewProbes returns an empty set of checks.
func NewProbes() *Probes { return &Probes{} }

// AddHealthz adds a liveness check; a check of that name is replaced.
func (p *Probes) AddHealthz(name string, c Checker) {
	if p != nil {
		p.add(&p.live, name, c)
	}
}

// AddReadyz adds a readiness check; a check of that name is replaced.
func (p *Probes) AddReadyz(name string, c Checker) {
	if p != nil {
		p.add(&p.ready, name, c)
	}
}

// Condition adds a readiness check that fails with reason until the
// returned Condition is Set(nil). On a nil *Probes the Condition is
// returned unregistered.
func (p *Probes) Condition(name, reason string) *Condition {
	c := NewCondition(reason)
	p.AddReadyz(name, c)
	return c
}

func (p *Probes) add(list *[]namedCheck, name string, c Checker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.IndexFunc(*list, func(n namedCheck) bool { return n.name == name }); i >= 0 {
		(*list)[i].c = c
		return
	}
	*list = append(*list, namedCheck{name, c})
}

// notStarted stands in for the readiness checks until the daemon adds its
// own: a process that has not begun loading its config is not ready.
var notStarted = namedCheck{"started", CheckerFunc(func() error { return errors.New("no readiness check registered yet") })}

// handler serves one list of checks, as Kubernetes' own /healthz and
// /readyz do: 200 "ok" when every check passes, else 503 with one line per
// check, "[+]name ok" or "[-]name failed: reason". With ?verbose the lines
// are written on success too. An empty list passes, unless ifEmpty is
// given: it then stands in for the missing checks.
func (p *Probes) handler(list *[]namedCheck, ifEmpty *namedCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		checks := slices.Clone(*list)
		p.mu.Unlock()
		if len(checks) == 0 && ifEmpty != nil {
			checks = []namedCheck{*ifEmpty}
		}
		var b strings.Builder
		failed := false
		for _, nc := range checks {
			if err := nc.c.Check(); err != nil {
				failed = true
				fmt.Fprintf(&b, "[-]%s failed: %v\n", nc.name, err)
				continue
			}
			fmt.Fprintf(&b, "[+]%s ok\n", nc.name)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if failed {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s%s check failed\n", b.String(), strings.TrimPrefix(r.URL.Path, "/"))
			return
		}
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			b.WriteString(strings.TrimPrefix(r.URL.Path, "/") + " check passed\n")
			fmt.Fprint(w, b.String())
			return
		}
		fmt.Fprint(w, "ok")
	})
}
