package engine

import (
	"fmt"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
)

// partialObj is obj decoded as a metadata-only watch caches it.
func partialObj(t testing.TB, name, uid, rv string) *object.Object {
	raw := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":"ns","uid":%q,"resourceVersion":%q},"data":{"k":"v"}}`, name, uid, rv)
	o, err := object.Decode([]byte(raw), object.Options{MetadataOnly: true})
	if err != nil || !o.Partial() {
		t.Fatalf("partialObj: %v (partial %v)", err, o != nil && o.Partial())
	}
	return o
}

// TestLedgerHoldsRulesThatReadBodies: a rule that reads bodies, new to a
// resource cached metadata only, is bound only when no watch caches
// metadata only and every entry's state has its body; then it gets its
// initial ADDED of each object, whole, and every later event. The other
// rules get every event meanwhile.
func TestLedgerHoldsRulesThatReadBodies(t *testing.T) {
	l, got, _ := testLedger()
	names := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n")
	l.bind(names)
	l.setPartialWatch(true)
	l.admit(nil, config.Added, partialObj(t, "a", "u1", "5"), nil, true)
	l.admit(nil, config.Added, partialObj(t, "b", "u2", "6"), nil, true)
	l.admit(nil, config.Added, partialObj(t, "c", "u3", "7"), nil, true)

	both := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/configmaps, cel: \"has(object.data)\"}\n")
	*got = nil
	l.bind(both)
	if len(*got) != 0 {
		t.Fatalf("a rule that reads bodies got %d events of partial states", len(*got))
	}
	if keys := l.told; !keys[both[0].Key] || keys[both[1].Key] {
		t.Errorf("told keys %v: want the first rule only", keys)
	}
	// The metadata-only watch still runs: its news goes to the bound rules.
	l.admit(nil, config.Updated, partialObj(t, "a", "u1", "8"), nil, false)
	// The watch that caches bodies lists: same states, whole.
	l.admit(nil, config.Added, obj("a", "u1", "8"), nil, true)
	l.admit(nil, config.Added, obj("b", "u2", "6"), nil, true)
	// The metadata-only watch stops; c's whole state has not come yet.
	l.setPartialWatch(false)
	l.admit(nil, config.Deleted, obj("b", "u2", "9"), nil, false)
	if n := len(*got); n != 2 {
		t.Fatalf("delivered %d events before c's body came, want 2 (a's update, b's deletion)", n)
	}
	for _, d := range *got {
		if !slices.Equal(d.rules, both[:1]) {
			t.Errorf("%s delivered to %d rules while the CEL rule is held", describeDelivery(d), len(d.rules))
		}
	}
	*got = nil
	l.admit(nil, config.Added, obj("c", "u3", "7"), nil, true)
	var out []string
	for _, d := range *got {
		out = append(out, describeDelivery(d))
		if d.obj.Partial() || !slices.Equal(d.rules, both[1:]) {
			t.Errorf("%s: partial %v, for %d rules; want whole, for the held rule", describeDelivery(d), d.obj.Partial(), len(d.rules))
		}
	}
	slices.Sort(out)
	if want := []string{"ADDED a u1@8 initial", "ADDED c u3@7 initial"}; !slices.Equal(out, want) {
		t.Errorf("released with %q, want %q", out, want)
	}
	*got = nil
	l.admit(nil, config.Updated, obj("a", "u1", "10"), nil, false)
	if len(*got) != 1 || !slices.Equal((*got)[0].rules, both) {
		t.Errorf("after the release an event is for every rule: %d deliveries", len(*got))
	}
}

// TestLedgerSweepGivesHeldRulesTheirBodies: partial states that no watch
// will send again (a metadata-only replacement stopped after its list
// replaced the whole states) are taken whole from the covering cache by the
// sweep, which releases the rules held for bodies.
func TestLedgerSweepGivesHeldRulesTheirBodies(t *testing.T) {
	l, got, _ := testLedger()
	names := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n")
	l.bind(names)
	l.admit(nil, config.Added, obj("a", "u1", "5"), nil, true)
	l.setPartialWatch(true)
	l.admit(nil, config.Added, partialObj(t, "a", "u1", "5"), nil, true) // same version, from the metadata-only watch
	both := compileRules(t, "resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/configmaps, cel: \"has(object.data)\"}\n")
	*got = nil
	l.bind(both)
	l.setPartialWatch(false)
	if len(*got) != 0 {
		t.Fatalf("released with a partial state left: %d events", len(*got))
	}
	whole := obj("a", "u1", "5")
	l.sweep([]listedScope{{namespace: "ns", selector: labels.Everything(), listed: 5,
		get: func(k nsName) *object.Object { return whole }}})
	if len(*got) != 1 || (*got)[0].obj != whole || !slices.Equal((*got)[0].rules, both[1:]) {
		t.Fatalf("after the sweep: %d events, want the held rule's ADDED of the cached state", len(*got))
	}
}
