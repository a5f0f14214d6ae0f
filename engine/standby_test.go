package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/faro-dev/faro/config"
)

// TestWatchMarks: an informer's mark is the version below its oldest event
// still queued, or the newest it saw when nothing is queued.
func TestWatchMarks(t *testing.T) {
	var m watchMarks
	steps := []struct {
		do   func()
		want uint64
	}{
		{func() {
			m.saw(5)
			m.queued(5)
			m.saw(6)
			m.queued(6)
			m.saw(7)
			m.queued(7)
		}, 4},
		{func() { m.done(6) }, 4},
		{func() { m.done(5) }, 6},
		{func() { m.saw(8) }, 6}, // dropped by the ledger: seen, nothing queued
		{func() { m.done(7) }, 8},
	}
	for i, s := range steps {
		s.do()
		if got := m.mark(); got != s.want {
			t.Fatalf("step %d: mark %d, want %d", i, got, s.want)
		}
	}
}

// TestStandbyTrimsWhatTheLeaderDelivered: a standby drops the queued events
// the leader's marks cover and, once it leads, delivers the others in order.
func TestStandbyTrimsWhatTheLeaderDelivered(t *testing.T) {
	rec := newRecorder()
	e, _ := newTestEngine(t, rec, 0, 0)
	w := &informer{key: watchKey{GVR: cmGVR, Namespace: "ns"}}
	l := e.resources[cmGVR].ledger
	l.admit(w, config.Added, cm("a", 1), nil, true)
	l.admit(w, config.Added, cm("b", 2), nil, true)
	l.admit(w, config.Updated, cm("a", 3), cm("a", 1), false)
	l.admit(w, config.Updated, cm("b", 4), cm("b", 2), false)
	e.Trim(map[string]uint64{w.key.String(): 2, "v1/configmaps in other": 9})
	if n := e.pending.len(); n != 2 {
		t.Fatalf("%d events left after the trim, want 2", n)
	}
	if got := w.marks.mark(); got != 2 {
		t.Errorf("the standby's own mark is %d, want 2 (the trimmed events count as delivered)", got)
	}
	for e.pending.len() > 0 {
		e.processNext(context.Background())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := strings.Join(rec.order, ","); got != "a@3,b@4" {
		t.Errorf("delivered %s, want a@3,b@4", got)
	}
}

// TestStandbyKeepsAMergedNewerState: an UPDATED merged into an older one
// (the backlog limit) is trimmed only once the leader's mark covers the
// newest state merged into it.
func TestStandbyKeepsAMergedNewerState(t *testing.T) {
	rec := newRecorder()
	e, _ := newTestEngine(t, rec, 0, 0)
	e.pending.max = 3
	w := &informer{key: watchKey{GVR: cmGVR, Namespace: "ns"}}
	l := e.resources[cmGVR].ledger
	prev := cm("a", 1)
	l.admit(w, config.Added, prev, nil, true)
	for rv := 2; rv <= 10; rv++ {
		u := cm("a", rv)
		l.admit(w, config.Updated, u, prev, false)
		prev = u
	}
	e.Trim(map[string]uint64{w.key.String(): 5})
	for e.pending.len() > 0 {
		e.processNext(context.Background())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got := strings.Join(rec.order, ","); got != "a@10" {
		t.Errorf("delivered %q, want a@10 (the merged state past the leader's mark)", got)
	}
}
