package engine

import (
	"fmt"
	"slices"
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
		obj("same", 5), obj("behind", 5), obj("ahead", 9), obj("gone", 3), obj("late", 12),
	}, obj("deleted-by-old", 7))
	cur := viewOf([]*unstructured.Unstructured{
		obj("same", 5), obj("behind", 8), obj("ahead", 6), obj("new", 11), obj("deleted-by-old", 7),
	}, obj("gone", 3))
	sends, floors := takeOver(old, cur)

	var got []string
	for _, d := range sends {
		if d.audience != carriedRules {
			t.Errorf("%s %s is not for the carried rules only", d.typ, d.obj.GetName())
		}
		got = append(got, fmt.Sprintf("%s %s@%s", d.typ, d.obj.GetName(), d.obj.GetResourceVersion()))
	}
	slices.Sort(got)
	want := []string{"ADDED new@11", "DELETED gone@3", "UPDATED behind@8"}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries = %v, want %v", got, want)
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
		{config.Deleted, obj("deleted-by-old", 7), true},
		{config.Updated, obj("same", 6), false},
	} {
		if got := w.skip(tt.typ, tt.obj); got != tt.skip {
			t.Errorf("skip(%s %s@%s) = %v, want %v", tt.typ, tt.obj.GetName(), tt.obj.GetResourceVersion(), got, tt.skip)
		}
	}
}
