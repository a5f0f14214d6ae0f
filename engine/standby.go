package engine

import (
	"container/heap"
	"sync"
)

// A standby replica runs its informers and its ledger like the leader but
// delivers nothing: its queue holds what it would deliver, and every time
// the leader publishes how far it got (Marks), the standby drops what the
// leader delivered (Trim). On takeover (Lead) it delivers the rest: every
// change after the leader's last published marks, so that only events of
// the last publishing interval can be delivered twice.

// watchMarks tracks how far the events of one informer were delivered: all
// of its events at or below mark() were delivered (or dropped by the ledger
// as already delivered). An informer's events come in resource-version
// order once it has listed.
type watchMarks struct {
	mu      sync.Mutex
	seen    uint64 // highest version of any event it passed to the ledger
	pending rvHeap // versions of its events queued and not yet delivered
	count   map[uint64]int
}

func (m *watchMarks) saw(rv uint64) {
	m.mu.Lock()
	m.seen = max(m.seen, rv)
	m.mu.Unlock()
}

func (m *watchMarks) queued(rv uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count == nil {
		m.count = map[uint64]int{}
	}
	if m.count[rv] == 0 {
		heap.Push(&m.pending, rv)
	}
	m.count[rv]++
}

func (m *watchMarks) done(rv uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count[rv]--; m.count[rv] <= 0 {
		delete(m.count, rv)
	}
	for m.pending.Len() > 0 && m.count[m.pending[0]] == 0 {
		heap.Pop(&m.pending)
	}
}

// busy reports whether events of the informer are queued.
func (m *watchMarks) busy() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pending.Len() > 0
}

// mark returns the version up to which every event was delivered.
func (m *watchMarks) mark() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending.Len() > 0 {
		return m.pending[0] - 1
	}
	return m.seen
}

type rvHeap []uint64

func (h rvHeap) Len() int           { return len(h) }
func (h rvHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h rvHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rvHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *rvHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Marks returns, for every informer that has listed, the resource version up
// to which its events were delivered: what a leader publishes for its
// standbys.
func (e *Engine) Marks() map[string]uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]uint64{}
	for _, rsc := range e.resources {
		for k, w := range rsc.watches {
			if w.synced.Load() {
				out[k.String()] = w.marks.mark()
			}
		}
	}
	return out
}

// Trim drops the queued events that the leader's marks say it delivered
// (they count as delivered here too). Events not from an informer, or from
// one the leader has no mark for, stay.
func (e *Engine) Trim(marks map[string]uint64) {
	if len(marks) == 0 {
		return
	}
	var gone []*delivery
	e.pending.mu.Lock()
	for _, o := range e.pending.items {
		q := o.events
		kept := q[:0]
		for _, d := range q {
			// A merged event is the leader's only once it has
			// delivered the newest state merged into it.
			if m, ok := marks[d.srcKey()]; ok && d.rv != 0 && max(d.rv, d.newest) <= m && !d.started() {
				gone = append(gone, d)
				continue
			}
			kept = append(kept, d)
		}
		clear(q[len(kept):])
		e.pending.total -= len(q) - len(kept)
		if len(kept) == 0 {
			e.pending.forget(o)
		} else {
			o.events = kept
		}
	}
	e.pending.mu.Unlock()
	for _, d := range gone {
		e.delivered(d)
	}
	if len(gone) > 0 {
		e.log.Debug("standby: dropped what the leader delivered", "events", len(gone))
	}
}

// Lead makes a standby engine deliver: its workers start on what is queued.
func (e *Engine) Lead() {
	e.leadOnce.Do(func() {
		e.pending.bound(true)
		close(e.lead)
	})
}

// Leading reports whether the engine delivers.
func (e *Engine) Leading() bool {
	select {
	case <-e.lead:
		return true
	default:
		return false
	}
}

// Pause stops delivering at once (a leader that lost its lease): workers
// take no new event; Run still returns when its context is done.
func (e *Engine) Pause() {
	e.stopping.Store(true)
	e.pending.bound(false)
}
