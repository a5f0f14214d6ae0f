package engine

import (
	"cmp"
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

// bind makes rs the rules of the resource. The rules new to it (by Key: not
// told of its objects yet) get an initial ADDED of every object in the state
// the others were last told, queued behind what was admitted before, so that
// they see each object once and from then on every event; those that read
// bodies wait for bodies (see above).
func (l *resourceLedger) bind(rs []*rules.Rule) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var added []*rules.Rule
	for _, r := range rs {
		if !l.told[r.Key] {
			added = append(added, r)
		}
	}
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
	l.noteTold()
}

// noteTold makes the bound rules the ones told of every object, and saves
// that in the checkpoint. Called with l.mu held.
func (l *resourceLedger) noteTold() {
	l.told = make(map[string]bool, len(l.rules))
	for _, r := range l.rules {
		l.told[r.Key] = true
	}
	l.persist()
}

// initial queues an ADDED of every object for the rules in rs: its newest
// state, or for an object resumed from the checkpoint and not listed yet,
// its last delivered one. Called with l.mu held.
func (l *resourceLedger) initial(rs []*rules.Rule) {
	if len(rs) == 0 {
		return
	}
	n := 0
	for e := range l.entries.all() {
		if e.deleted {
			continue
		}
		o := e.last
		if o == nil {
			o = l.lastState(placeOf(e.place), e)
		}
		l.deliver(delivery{typ: config.Added, obj: o, initial: true, rules: rs, informs: l.save != nil})
		n++
	}
	if l.save != nil && n > 0 {
		// The rules count as told once these are delivered (informed).
		if l.informing == nil {
			l.informing = map[string]int{}
		}
		for _, r := range rs {
			l.informing[r.Key] += n
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
	l.noteTold()
}

// setPartialWatch says whether a watch of the resource caches metadata
// only.
func (l *resourceLedger) setPartialWatch(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partialWatch = on
	l.release()
}

// listed ends the resource's first listing: from now on an object listed
// for the first time (a watch's scope widened) gives an initial ADDED. The
// record starts at that listing's cutoff, or when it had none at the oldest
// of its watches' lists (first). Called once all of them have listed.
func (l *resourceLedger) listed(first uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.origin == 0 {
		l.origin = cmp.Or(l.since, first)
	}
	l.since = 0
	l.persist()
}

// advance moves the record's Since up to mark, a version at or below which
// every event of the resource's watches was delivered. Called after listed.
func (l *resourceLedger) advance(mark uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if mark > l.origin {
		l.origin = mark
		l.persist()
	}
}

// persist saves the binding in the checkpoint: the rules told of every
// object, not those still being told. Called with l.mu held.
func (l *resourceLedger) persist() {
	if l.save == nil || l.forgotten.Load() {
		return
	}
	b := &Binding{Since: l.origin}
	for k := range l.told {
		if l.informing[k] == 0 {
			b.Rules = append(b.Rules, k)
		}
	}
	slices.Sort(b.Rules)
	l.save(b)
}

// informed notes that an initial ADDED to the rules rs was delivered.
func (l *resourceLedger) informed(rs []*rules.Rule) {
	l.mu.Lock()
	defer l.mu.Unlock()
	done := false
	for _, r := range rs {
		if l.informing[r.Key]--; l.informing[r.Key] <= 0 {
			delete(l.informing, r.Key)
			done = true
		}
	}
	if done {
		l.persist()
	}
}

// forget marks the resource as watched by no rule: nothing of it is
// recorded any more, and the checkpoint drops it.
func (l *resourceLedger) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgotten.Store(true)
	if l.save != nil {
		l.save(nil)
	}
}
