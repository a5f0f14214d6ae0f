package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/faro-dev/faro/config"
)

func obj(uid string, rv int) *unstructured.Unstructured {
	u := cm(uid, rv)
	u.SetUID(types.UID(uid))
	return u
}

func viewOf(objects []*unstructured.Unstructured, deleted ...*unstructured.Unstructured) view {
	v := newView()
	for _, u := range objects {
		v.objects[u.GetUID()] = u
	}
	for _, u := range deleted {
		v.deleted[u.GetUID()] = u
	}
	return v
}

// TestTakeOver: what a new watch must still deliver, and skip, when it
// takes over from the watches it replaces.
func TestTakeOver(t *testing.T) {
	old := viewOf([]*unstructured.Unstructured{
		obj("same", 5), obj("behind", 5), obj("ahead", 9), obj("gone", 3), obj("late", 12), obj("vanished", 4),
	}, obj("deleted-by-old", 7))
	cur := viewOf([]*unstructured.Unstructured{
		obj("same", 5), obj("behind", 8), obj("ahead", 6), obj("new", 11), obj("deleted-by-old", 7),
	}, obj("gone", 3))
	cur.maxRV = 11
	sends, floors, final := takeOver(old, cur)

	var got []string
	for _, d := range sends {
		if d.audience != carriedRules {
			t.Errorf("%s %s is not for the carried rules only", d.typ, d.obj.GetName())
		}
		got = append(got, fmt.Sprintf("%s %s@%s", d.typ, d.obj.GetName(), d.obj.GetResourceVersion()))
	}
	// Deletions come first (a name may be re-created under a new uid).
	if len(got) < 2 || !strings.HasPrefix(got[0], "DELETED") || !strings.HasPrefix(got[1], "DELETED") {
		t.Errorf("deletions not first: %v", got)
	}
	slices.Sort(got)
	want := []string{"ADDED new@11", "DELETED gone@3", "DELETED vanished@4", "UPDATED behind@8"}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
	}
	var state []string
	for _, u := range final.objects {
		state = append(state, u.GetName()+"@"+u.GetResourceVersion())
	}
	slices.Sort(state)
	if want := []string{"ahead@9", "behind@8", "late@12", "new@11", "same@5"}; !slices.Equal(state, want) {
		t.Errorf("final state = %v, want %v", state, want)
	}
	wantFloors := map[types.UID]floor{
		"ahead":          {rv: 9},                // the new watch lags: skip up to 9
		"late":           {rv: 12},               // created after the new list: skip its ADDED
		"deleted-by-old": {rv: 7, deleted: true}, // the old watch delivered the delete
	}
	if len(floors) != len(wantFloors) {
		t.Errorf("floors = %v, want %v", floors, wantFloors)
	}
	for uid, f := range wantFloors {
		if floors[uid] != f {
			t.Errorf("floor %s = %+v, want %+v", uid, floors[uid], f)
		}
	}

	w := &watch{floors: floors}
	for _, tt := range []struct {
		typ  config.EventType
		obj  *unstructured.Unstructured
		skip bool
	}{
		{config.Updated, obj("ahead", 7), true},
		{config.Updated, obj("ahead", 9), true},
		{config.Updated, obj("ahead", 10), false},
		{config.Updated, obj("ahead", 11), false}, // floor cleared once passed
		{config.Added, obj("late", 12), true},
		{config.Updated, obj("deleted-by-old", 7), true},
		{config.Deleted, obj("deleted-by-old", 7), true},
		{config.Updated, obj("same", 6), false},
	} {
		if got := w.skip(tt.typ, tt.obj); got != tt.skip {
			t.Errorf("skip(%s %s@%s) = %v, want %v", tt.typ, tt.obj.GetName(), tt.obj.GetResourceVersion(), got, tt.skip)
		}
	}
}

// TestNonIntegerResourceVersions: versions that are not integers are
// compared as strings, never swallowing an update.
func TestNonIntegerResourceVersions(t *testing.T) {
	mk := func(rv string) *unstructured.Unstructured {
		u := obj("x", 0)
		u.SetResourceVersion(rv)
		return u
	}
	sends, floors, _ := takeOver(viewOf([]*unstructured.Unstructured{mk("a")}), viewOf([]*unstructured.Unstructured{mk("b")}))
	if len(sends) != 1 || sends[0].typ != config.Updated || len(floors) != 0 {
		t.Fatalf("sends %v floors %v: want one UPDATED and no floor", sends, floors)
	}
	w := &watch{floors: map[types.UID]floor{"x": floorAt(mk("a"), false)}}
	if !w.skip(config.Updated, mk("a")) {
		t.Error("the delivered version was not skipped")
	}
	if w.skip(config.Updated, mk("c")) || w.skip(config.Updated, mk("a")) {
		t.Error("a different version was skipped, or the floor was not cleared")
	}
}
