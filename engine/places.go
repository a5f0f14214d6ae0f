package engine

import (
	"hash/maphash"
	"iter"
	"strings"
)

// nsName is an object's place: client-go caches by it, and an object
// deleted and re-created under it is two objects with two UIDs.
type nsName struct{ namespace, name string }

// appendPlace appends the place key of k, namespace/name (neither part can
// hold a slash), to buf.
func appendPlace(buf []byte, k nsName) []byte {
	buf = append(buf, k.namespace...)
	buf = append(buf, '/')
	return append(buf, k.name...)
}

// placeKey returns the place key of k.
func placeKey(k nsName) string {
	var buf [128]byte // most keys are built here and copied once
	return string(appendPlace(buf[:0], k))
}

// placeOf returns the place of a place key.
func placeOf(key string) nsName {
	ns, name, _ := strings.Cut(key, "/")
	return nsName{ns, name}
}

// places indexes a ledger's entries by their place keys. It is a map from a
// seeded 64-bit hash of the key to the entry, whose own place key settles
// the match; entries whose keys hash alike are chained through next.
//
// The finding of an entry by its place is a cache miss on a map the size of
// the resource. A map keyed by the string itself reads a group's control
// word, then a 24-byte slot that usually lies on another cache line, then
// the key's bytes elsewhere, and only then the entry. A 16-byte slot lies
// more often on the control word's line, and the entry, read anyway, holds
// the key to compare.
type places struct {
	seed maphash.Seed
	// mask selects the bits of the hash used: all of them, except in tests
	// that make keys collide.
	mask uint64
	m    map[uint64]*entry
	n    int
}

func newPlaces() places {
	return places{seed: maphash.MakeSeed(), mask: ^uint64(0), m: map[uint64]*entry{}}
}

// hash returns the map key of the place key.
func (p *places) hash(key string) uint64 { return maphash.String(p.seed, key) & p.mask }

// get returns the entry at the place key in key, nil if none.
func (p *places) get(key []byte) *entry {
	for e := p.m[maphash.Bytes(p.seed, key)&p.mask]; e != nil; e = e.next {
		if e.place == string(key) {
			return e
		}
	}
	return nil
}

// add indexes e, whose place no other entry holds.
func (p *places) add(e *entry) {
	h := p.hash(e.place)
	e.next = p.m[h]
	p.m[h] = e
	p.n++
}

// remove unindexes e.
func (p *places) remove(e *entry) {
	h := p.hash(e.place)
	switch head := p.m[h]; {
	case head == e && e.next == nil:
		delete(p.m, h)
	case head == e:
		p.m[h] = e.next
	default:
		for prev := head; prev != nil; prev = prev.next {
			if prev.next == e {
				prev.next = e.next
				break
			}
		}
	}
	e.next = nil
	p.n--
}

// len returns the number of entries.
func (p *places) len() int { return p.n }

// all yields every entry; the one yielded may be removed.
func (p *places) all() iter.Seq[*entry] {
	return func(yield func(*entry) bool) {
		for _, head := range p.m {
			for e := head; e != nil; {
				next := e.next
				if !yield(e) {
					return
				}
				e = next
			}
		}
	}
}
