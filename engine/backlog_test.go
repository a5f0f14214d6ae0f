package engine

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
)

// TestQueueInitialListWaitsForRoom: while the engine delivers, an initial
// list's ADDED waits until fewer than listBacklog events are queued; it
// gives up when its watch stops, and never waits while the bound is off.
func TestQueueInitialListWaitsForRoom(t *testing.T) {
	tests := []struct {
		name string
		free func(p *pendingEvents, objs []*pendingObj, cancel context.CancelFunc)
		want bool
	}{
		{"a worker makes room", func(p *pendingEvents, objs []*pendingObj, _ context.CancelFunc) { p.pop(objs[0]) }, true},
		{"the watch stops", func(_ *pendingEvents, _ []*pendingObj, cancel context.CancelFunc) { cancel() }, false},
		{"the engine stops delivering", func(p *pendingEvents, _ []*pendingObj, _ context.CancelFunc) { p.bound(false) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &pendingEvents{}
			p.init(10)
			p.bound(true)
			var objs []*pendingObj
			for i := range listBacklog {
				o, _, _ := p.push(objKey{Name: strconv.Itoa(i)}, &delivery{typ: config.Added})
				objs = append(objs, o)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan bool, 1)
			go func() { got <- p.waitRoom(ctx) }()
			select {
			case r := <-got:
				t.Fatalf("waitRoom returned %v with %d events queued", r, listBacklog)
			case <-time.After(20 * time.Millisecond):
			}
			tt.free(p, objs, cancel)
			if r := <-got; r != tt.want {
				t.Errorf("waitRoom = %v, want %v", r, tt.want)
			}
		})
	}
	p := &pendingEvents{}
	p.init(10)
	for i := range listBacklog {
		p.push(objKey{Name: strconv.Itoa(i)}, &delivery{typ: config.Added})
	}
	if !p.waitRoom(context.Background()) {
		t.Error("waitRoom waited while unbounded (a standby engine)")
	}
}

// BenchmarkQueueMemory reports the bytes one queued event costs while it
// waits (its delivery record, the object's pending events and the
// workqueue's item) with the ledger's entry of its object (about 100 bytes,
// see BenchmarkLedgerMemory), with 10k objects' initial ADDEDs queued at
// once, as after a first list; the objects belong to the informer's cache.
func BenchmarkQueueMemory(b *testing.B) {
	const objects = 10_000
	objs := make([]*object.Object, objects)
	for i := range objs {
		objs[i] = obj(fmt.Sprintf("cm-%d", i), fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), strconv.Itoa(i+1))
	}
	var perEvent float64
	for range b.N {
		e, _ := newTestEngine(b, nil, 0, 0)
		l := e.resources[cmGVR].ledger
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for _, o := range objs {
			l.admit(nil, config.Added, o, nil, true)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perEvent = float64(after.HeapAlloc-before.HeapAlloc) / objects
		if n := e.pending.len(); n != objects {
			b.Fatalf("%d events queued, want %d", n, objects)
		}
		for _, o := range objs {
			o.SetOwner(nil)
		}
	}
	b.ReportMetric(perEvent, "bytes/event")
}
