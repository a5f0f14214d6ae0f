package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPlaces runs random adds and removes against a map of the same keys,
// with few hash bits kept so that many keys share a chain.
func TestPlaces(t *testing.T) {
	for _, tt := range []struct {
		name string
		mask uint64
	}{
		{"every key in one chain", 0},
		{"chains of about 8", 7},
		{"all hash bits", ^uint64(0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlaces()
			p.mask = tt.mask
			want := map[string]*entry{}
			rnd := rand.New(rand.NewPCG(1, 2))
			for i := range 2000 {
				key := fmt.Sprintf("ns-%d/cm-%d", rnd.IntN(3), rnd.IntN(20))
				if e := want[key]; e != nil && rnd.IntN(2) == 0 {
					p.remove(e)
					delete(want, key)
				} else if e == nil {
					e = &entry{place: key}
					p.add(e)
					want[key] = e
				}
				for k, e := range want {
					if got := p.get([]byte(k)); got != e {
						t.Fatalf("step %d: get(%q) = %p, want %p", i, k, got, e)
					}
				}
				if got := p.get([]byte(key)); got != want[key] {
					t.Fatalf("step %d: get(%q) = %p after its change, want %p", i, key, got, want[key])
				}
				if p.len() != len(want) {
					t.Fatalf("step %d: len %d, want %d", i, p.len(), len(want))
				}
			}
			var all []string
			for e := range p.all() {
				all = append(all, e.place)
				p.remove(e) // all allows removing the entry it yields
			}
			slices.Sort(all)
			keys := make([]string, 0, len(want))
			for k := range want {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !slices.Equal(all, keys) {
				t.Errorf("all yielded %q, want %q", all, keys)
			}
			if p.len() != 0 || len(p.m) != 0 {
				t.Errorf("after removing all: len %d, %d chains", p.len(), len(p.m))
			}
		})
	}
}
