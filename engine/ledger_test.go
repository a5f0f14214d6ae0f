package engine

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
)

// obj is a ConfigMap ns/name with a uid and a resource version.
func obj(name, uid, rv string) *object.Object {
	return object.Identity("v1", "ConfigMap", "ns", name, types.UID(uid), rv)
}

// ev is one informer event in a ledger test.
type ev struct {
	typ      config.EventType
	name     string
	uid, rv  string
	old      string // uid@rv of the informer's old object on UPDATED
	initial  bool
	overlap  bool // set the ledger's overlap before this event
	noverlap bool // clear it
}

// testLedger returns a ledger of configmaps whose deliveries are collected.
func testLedger() (*resourceLedger, *[]*delivery, *[]string) {
	var got []*delivery
	var warned []string
	l := newResourceLedger(cmGVR, "ConfigMap", func(d *delivery) { got = append(got, d) },
		func(msg string, _ ...any) { warned = append(warned, msg) })
	return l, &got, &warned
}

// describeDelivery renders a delivery as "TYPE name uid@rv", with
// " old=uid@rv" on UPDATED and " initial" when set.
func describeDelivery(d *delivery) string {
	s := fmt.Sprintf("%s %s %s@%s", d.typ, d.obj.GetName(), d.obj.GetUID(), d.obj.GetResourceVersion())
	if d.old != nil {
		s += fmt.Sprintf(" old=%s@%s", d.old.GetUID(), d.old.GetResourceVersion())
	}
	if d.initial {
		s += " initial"
	}
	return s
}

func TestLedgerAdmit(t *testing.T) {
	tests := []struct {
		name   string
		since  uint64
		events []ev
		want   []string
		warns  int
	}{
		{"overlapping watches deliver each change once", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5", initial: true},
			{typ: config.Added, name: "a", uid: "u1", rv: "5", initial: true},
			{typ: config.Updated, name: "a", uid: "u1", rv: "6", old: "u1@5"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "6", old: "u1@5"},
			{typ: config.Added, name: "a", uid: "u1", rv: "6", initial: true}, // a relist
		}, []string{"ADDED a u1@5 initial", "UPDATED a u1@6 old=u1@5"}, 0},
		{"a lagging watch's update carries the state the rules know as old", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "7", old: "u1@3"},
		}, []string{"ADDED a u1@5", "UPDATED a u1@7 old=u1@5"}, 0},
		{"re-create seen as an update is DELETED then ADDED", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5", initial: true},
			{typ: config.Updated, name: "a", uid: "u2", rv: "9", old: "u1@5"},
		}, []string{"ADDED a u1@5 initial", "DELETED a u1@5", "ADDED a u2@9"}, 0},
		{"a deletion never delivered is dropped", 0, []ev{
			{typ: config.Deleted, name: "a", uid: "u1", rv: "5"},
			{typ: config.Added, name: "b", uid: "u2", rv: "6"},
			{typ: config.Deleted, name: "b", uid: "u1", rv: "7"},
		}, []string{"ADDED b u2@6"}, 0},
		{"a relist's deletion with the last known version is delivered", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5"},
			{typ: config.Deleted, name: "a", uid: "u1", rv: "5"},
		}, []string{"ADDED a u1@5", "DELETED a u1@5"}, 0},
		{"an old object's late events after its successor are dropped", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5"},
			{typ: config.Deleted, name: "a", uid: "u1", rv: "7"},
			{typ: config.Added, name: "a", uid: "u2", rv: "8"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "6", old: "u1@5"},
			{typ: config.Deleted, name: "a", uid: "u1", rv: "7"},
		}, []string{"ADDED a u1@5", "DELETED a u1@7", "ADDED a u2@8"}, 0},
		{"tombstones keep a lagging watch from bringing a deleted object back", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5", overlap: true},
			{typ: config.Deleted, name: "a", uid: "u1", rv: "7"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "6", old: "u1@5"},
			{typ: config.Added, name: "a", uid: "u1", rv: "6", initial: true},
			{typ: config.Deleted, name: "a", uid: "u1", rv: "7"},
			{typ: config.Added, name: "a", uid: "u2", rv: "8"},
		}, []string{"ADDED a u1@5", "DELETED a u1@7", "ADDED a u2@8"}, 0},
		{"resource versions that are not integers are delivered as new, with one warning", 0, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "x1"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "x2", old: "u1@x1"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "x2", old: "u1@x1"},
			{typ: config.Updated, name: "a", uid: "u1", rv: "x0", old: "u1@x2"},
		}, []string{"ADDED a u1@x1", "UPDATED a u1@x2 old=u1@x1", "UPDATED a u1@x0 old=u1@x2"}, 1},
		{"objects newer than the resource's appearance are not initial", 10, []ev{
			{typ: config.Added, name: "a", uid: "u1", rv: "5", initial: true},
			{typ: config.Added, name: "b", uid: "u2", rv: "12", initial: true},
		}, []string{"ADDED a u1@5 initial", "ADDED b u2@12"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, got, warned := testLedger()
			l.since = tt.since
			for _, e := range tt.events {
				if e.overlap || e.noverlap {
					l.setOverlap(e.overlap)
				}
				var old *object.Object
				if e.old != "" {
					uid, rv, _ := strings.Cut(e.old, "@")
					old = obj(e.name, uid, rv)
				}
				l.admit(nil, e.typ, obj(e.name, e.uid, e.rv), old, e.initial)
			}
			var out []string
			for _, d := range *got {
				out = append(out, describeDelivery(d))
				if d.ledger != l || d.key().GVR() != cmGVR {
					t.Errorf("%s: not stamped with its ledger", describeDelivery(d))
				}
			}
			if !slices.Equal(out, tt.want) {
				t.Errorf("delivered\n  %s\nwant\n  %s", strings.Join(out, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if len(*warned) != tt.warns {
				t.Errorf("warnings %q, want %d", *warned, tt.warns)
			}
		})
	}
}

// TestLedgerResumedStates: an entry resumed from the checkpoint has no
// object in memory; the UPDATED and DELETED it leads to carry the state the
// checkpoint has, or the entry's identity when it has none.
func TestLedgerResumedStates(t *testing.T) {
	l, got, _ := testLedger()
	l.since = 6 // the checkpoint's highest delivered version
	l.entries.add(&entry{place: "ns/a", uid: "u1", rv: 5})
	l.entries.add(&entry{place: "ns/b", uid: "u2", rv: 6})
	l.resumed = func(uid types.UID) *object.Object {
		if uid == "u1" {
			return obj("a", "u1", "5")
		}
		return nil
	}
	l.admit(nil, config.Added, obj("a", "u1", "8"), nil, true)
	l.admit(nil, config.Added, obj("b", "u3", "9"), nil, true)
	want := []string{"UPDATED a u1@8 old=u1@5", "DELETED b u2@6", "ADDED b u3@9"}
	var out []string
	for _, d := range *got {
		out = append(out, describeDelivery(d))
	}
	if !slices.Equal(out, want) {
		t.Fatalf("delivered %q, want %q", out, want)
	}
	if k := (*got)[1].obj.Kind; k != "ConfigMap" {
		t.Errorf("identity-only DELETED has kind %q", k)
	}
}

// TestLedgerBind: rules new to a resource get an initial ADDED of every
// live object in the state last admitted; the others get nothing again.
func TestLedgerBind(t *testing.T) {
	l, got, _ := testLedger()
	old := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n")
	l.bind(old)
	l.admit(nil, config.Added, obj("a", "u1", "5"), nil, false)
	l.admit(nil, config.Updated, obj("a", "u1", "6"), obj("a", "u1", "5"), false)
	l.setOverlap(true)
	l.admit(nil, config.Added, obj("b", "u2", "7"), nil, false)
	l.admit(nil, config.Deleted, obj("b", "u2", "8"), nil, false) // a tombstone: no initial event
	both := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/configmaps, name_pattern: a}\n")
	*got = nil
	l.bind(both)
	if len(*got) != 1 {
		t.Fatalf("bind delivered %d events, want 1", len(*got))
	}
	d := (*got)[0]
	if describeDelivery(d) != "ADDED a u1@6 initial" || len(d.rules) != 1 || d.rules[0] != both[1] {
		t.Errorf("bind delivered %s for %d rules", describeDelivery(d), len(d.rules))
	}
	l.admit(nil, config.Updated, obj("a", "u1", "9"), obj("a", "u1", "6"), false)
	if d := (*got)[1]; !sameRules(d.rules, both) {
		t.Errorf("a later event is for %d rules, want the whole bound set", len(d.rules))
	}
}

// TestLedgerSweep: once the watches of a resource have listed, entries no
// watch covers are forgotten silently, entries a covering cache lacks are
// DELETED unless newer than its list, and tombstones go.
func TestLedgerSweep(t *testing.T) {
	l, got, _ := testLedger()
	put := func(ns, name, uid string, rv uint64, labels map[string]string) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetNamespace(ns)
		u.SetName(name)
		u.SetUID(types.UID(uid))
		u.SetResourceVersion(strconv.FormatUint(rv, 10))
		u.SetLabels(labels)
		o, err := object.FromUnstructured(u)
		if err != nil {
			t.Fatal(err)
		}
		l.entries.add(&entry{place: placeKey(nsName{ns, name}), uid: types.UID(uid), rv: rv, last: o})
	}
	put("ns", "kept", "u1", 5, nil)
	put("ns", "gone", "u2", 6, nil)
	put("ns", "newer", "u3", 20, nil)
	put("other", "outside", "u4", 7, nil)
	put("ns", "unlabelled", "u5", 8, map[string]string{"team": "b"})
	l.entries.add(&entry{place: "ns/tomb", uid: "u6", rv: 9, deleted: true})
	l.overlap = true
	sel, _ := labels.Parse("team!=b")
	cache := map[nsName]bool{{"ns", "kept"}: true}
	l.sweep([]listedScope{{namespace: "ns", selector: sel, listed: 10, get: func(k nsName) *object.Object {
		if cache[k] {
			return obj(k.name, "u1", "5")
		}
		return nil
	}}})
	var out []string
	for _, d := range *got {
		out = append(out, describeDelivery(d))
	}
	if !slices.Equal(out, []string{"DELETED gone u2@6"}) {
		t.Errorf("sweep delivered %q, want only the DELETED of gone", out)
	}
	var left []string
	for e := range l.entries.all() {
		left = append(left, placeOf(e.place).name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"kept", "newer"}) {
		t.Errorf("entries left %q, want kept and newer", left)
	}
	if l.overlap || l.tombs != nil {
		t.Error("sweep left the overlap on")
	}
}

// BenchmarkAdmit measures the admission step for one UPDATED of one of 10k
// objects known to the ledger (the queue only recycles). As in the
// daemon, each event's object was just decoded from the watch: the objects
// are made, outside the timer, in batches that fit the CPU's caches, while
// the ledger's entries are as cold as 10k objects make them. "informer"
// passes the informer's old state, which leads to the entry; "lookup"
// passes none, so the entry is found by its place (as for an ADDED of an
// object the ledger knows, which a replacement watch's initial list gives,
// or an event of a watch that lags behind another); "added" is the ADDED
// of an object the ledger does not know, which adds an entry. Besides the
// wall-clock ns/op it reports cpu-ns/op, the CPU time of the admitting
// thread alone, which a busy machine does not inflate.
func BenchmarkAdmit(b *testing.B) {
	// informer: an UPDATED as informers deliver it, with the old state;
	// lookup: the same without it; deleted: a DELETED with the state the
	// informer cached; added: an ADDED where the object was deleted before
	// the batch.
	for _, mode := range []string{"informer", "lookup", "deleted", "added"} {
		b.Run(mode, func(b *testing.B) { benchmarkAdmit(b, mode) })
	}
}

func benchmarkAdmit(b *testing.B, mode string) {
	const objects, batch = 10_000, 256
	// The queue gives each delivery record back once done with it, as the
	// engine's workers do when its event is processed.
	l := newResourceLedger(cmGVR, "ConfigMap", func(d *delivery) { d.release() }, func(string, ...any) {})
	l.bind(compileRules(b, "resources:\n  - {gvr: v1/configmaps}\n"))
	names, uids := make([]string, objects), make([]string, objects)
	last := make([]*object.Object, objects)
	for i := range objects {
		names[i] = fmt.Sprintf("cm-%d", i)
		uids[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i) // as the API server makes them
		last[i] = obj(names[i], uids[i], strconv.Itoa(i+1))
		l.admit(nil, config.Added, last[i], nil, true)
	}
	rv := objects
	next := make([]*object.Object, batch)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; {
		b.StopTimer()
		for j := range next {
			i := (n + j) % objects
			rv++
			// Decoding gives each object strings of its own.
			next[j] = obj(strings.Clone(names[i]), strings.Clone(uids[i]), strconv.Itoa(rv))
			known := l.entries.get([]byte("ns/"+names[i])) != nil
			switch {
			case mode == "deleted" && !known:
				l.admit(nil, config.Added, next[j], nil, false) // deleted in the last batch
				last[i] = next[j]
			case mode == "added" && known:
				l.admit(nil, config.Deleted, last[i], nil, false) // to be created again
			}
		}
		b.StartTimer()
		start := threadCPU(b)
		for j := 0; j < batch && n < b.N; j, n = j+1, n+1 {
			i := n % objects
			switch mode {
			case "informer":
				l.admit(nil, config.Updated, next[j], last[i], false)
				last[i] = next[j]
			case "lookup":
				l.admit(nil, config.Updated, next[j], nil, false)
				last[i] = next[j]
			case "deleted":
				l.admit(nil, config.Deleted, last[i], nil, false)
			case "added":
				l.admit(nil, config.Added, next[j], nil, false)
				last[i] = next[j]
			}
		}
		cpu += threadCPU(b) - start
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// threadCPU returns the CPU time the calling OS thread has used.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkLedgerMemory reports the ledger's own bytes per object: the
// objects themselves belong to the informer's cache and are only pointed to.
func BenchmarkLedgerMemory(b *testing.B) {
	const objects = 100_000
	objs := make([]*object.Object, objects)
	for i := range objs {
		name := fmt.Sprintf("cm-%d", i)
		objs[i] = obj(name, fmt.Sprintf("%08d-0000-0000-0000-000000000000", i), strconv.Itoa(i+1))
	}
	var perObject float64
	for range b.N {
		var before, after runtime.MemStats
		for _, o := range objs {
			o.SetOwner(nil) // the last round's ledger is garbage before it is measured
		}
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := newResourceLedger(cmGVR, "ConfigMap", func(*delivery) {}, func(string, ...any) {})
		for _, u := range objs {
			l.admit(nil, config.Added, u, nil, true)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perObject = float64(after.HeapAlloc-before.HeapAlloc) / objects
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perObject, "bytes/object")
}

// TestLedgerTombstonesAreBounded: while watches overlap (a replacement that
// cannot list keeps them overlapping), deletions are kept as tombstones up
// to maxTombstones, oldest forgotten first, with one warning.
func TestLedgerTombstonesAreBounded(t *testing.T) {
	l, _, warned := testLedger()
	l.setOverlap(true)
	for i := range maxTombstones + 5 {
		name := fmt.Sprintf("cm-%d", i)
		l.admit(nil, config.Added, obj(name, "u"+name, strconv.Itoa(2*i+1)), nil, false)
		l.admit(nil, config.Deleted, obj(name, "u"+name, strconv.Itoa(2*i+2)), nil, false)
	}
	if n := l.entries.len(); n != maxTombstones {
		t.Errorf("%d tombstones kept, want %d", n, maxTombstones)
	}
	if l.entries.get([]byte("ns/cm-0")) != nil {
		t.Error("the oldest tombstone was kept")
	}
	if len(*warned) != 1 {
		t.Errorf("warnings %q, want one", *warned)
	}
}

// TestLedgerHintOfAForgottenEntry: an UPDATED's old object leads admission
// to its entry only while that entry is in the ledger. A lagging watch's
// old state of a deleted object must not revive the deleted entry: the
// event is admitted against the entry of the object now at its place.
func TestLedgerHintOfAForgottenEntry(t *testing.T) {
	l, got, _ := testLedger()
	first := obj("a", "u1", "1")
	l.admit(nil, config.Added, first, nil, false)
	l.admit(nil, config.Deleted, obj("a", "u1", "2"), nil, false)
	second := obj("a", "u2", "3")
	l.admit(nil, config.Added, second, nil, false)
	// The lagging watch still holds first; its next state is second's.
	l.admit(nil, config.Updated, obj("a", "u2", "4"), first, false)
	// And the usual case: the old state is the one the ledger holds.
	l.admit(nil, config.Updated, obj("a", "u2", "5"), (*got)[len(*got)-1].obj, false)
	var out []string
	for _, d := range *got {
		out = append(out, describeDelivery(d))
	}
	want := []string{"ADDED a u1@1", "DELETED a u1@2", "ADDED a u2@3", "UPDATED a u2@4 old=u2@3", "UPDATED a u2@5 old=u2@4"}
	if !slices.Equal(out, want) {
		t.Errorf("delivered\n  %s\nwant\n  %s", strings.Join(out, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestLedgerHintWhileWatchesOverlap: the states two overlapping watches
// cache of one version of an object both lead admission to its entry, so
// neither watch's next event needs the lookup by place.
func TestLedgerHintWhileWatchesOverlap(t *testing.T) {
	l, _, _ := testLedger()
	first, second := obj("a", "u1", "5"), obj("a", "u1", "5")
	l.admit(nil, config.Added, first, nil, false)
	l.admit(nil, config.Added, second, nil, false) // the other watch's copy
	e := l.entries.get([]byte("ns/a"))
	for i, o := range []*object.Object{first, second} {
		if hinted(o) != e {
			t.Errorf("watch %d's state does not lead to the entry", i+1)
		}
	}
}
