package engine

import (
	"slices"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/rules"
)

// Binding rules to a resource's ledger. A resource whose rules all read
// nothing but metadata is watched metadata only (object.Options.MetadataOnly),
// and its cache holds Partial states. A rule that reads bodies (CEL,
// plugins) must never see one, so when such a rule is new to a resource
// whose states are partial it is held back: it is bound, with its initial
// ADDED of every object, once the resource's watches decode bodies and
// every entry's newest state has its body (the replacing watch has sent
// it, or the sweep after the replacement took it from that watch's cache).
// Until then the other rules keep getting every event.

// bind makes rs the rules of the resource. The rules in added (new to the
// resource) get an initial ADDED of every object in the state the others
// were last told, queued behind what was admitted before, so that they see
// each object once and from then on every event; those that read bodies
// wait for bodies (see above).
func (l *resourceLedger) bind(rs, added []*rules.Rule) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rules, l.full, l.held = rs, rs, nil
	if l.partial > 0 || l.partialWatch {
		held := func(r *rules.Rule) bool { return r.ReadsBody() && slices.Contains(added, r) }
		for _, r := range rs {
			if held(r) {
				l.held = append(l.held, r)
			}
		}
		if l.held != nil {
			l.rules = slices.DeleteFunc(slices.Clone(rs), held)
			added = slices.DeleteFunc(slices.Clone(added), held)
		}
	}
	l.initial(added)
}

// initial queues an ADDED of every object for the rules in rs. Called with
// l.mu held.
func (l *resourceLedger) initial(rs []*rules.Rule) {
	if len(rs) == 0 {
		return
	}
	for e := range l.entries.all() {
		if !e.deleted && e.last != nil {
			l.deliver(delivery{typ: config.Added, obj: e.last, initial: true, rules: rs})
		}
	}
}

// release binds the held rules once every state has its body. Called with
// l.mu held.
func (l *resourceLedger) release() {
	if l.held == nil || l.partial > 0 || l.partialWatch {
		return
	}
	held := l.held
	l.rules, l.held = l.full, nil
	l.initial(held)
}

// setPartialWatch says whether a watch of the resource caches metadata
// only.
func (l *resourceLedger) setPartialWatch(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partialWatch = on
	l.release()
}
