package engine

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/faro-dev/faro/internal/object"
)

// TestShardsPartitionObjects: every object belongs to exactly one of the
// shards, whatever its UID, and the shards share the load.
func TestShardsPartitionObjects(t *testing.T) {
	const total, objects = 3, 3000
	per := make([]int, total)
	for i := range objects {
		ns, name := fmt.Sprintf("ns-%d", i%7), fmt.Sprintf("obj-%d", i)
		owners := 0
		for s := range total {
			if (Shard{Index: s, Total: total}).owns(ns, name) {
				owners++
				per[s]++
			}
		}
		if owners != 1 {
			t.Fatalf("%s/%s has %d owners", ns, name, owners)
		}
	}
	for s, n := range per {
		if n < objects/total/2 {
			t.Errorf("shard %d owns %d of %d objects", s, n, objects)
		}
	}
	if !(Shard{}).owns("a", "b") || !(Shard{Total: 1}).owns("a", "b") {
		t.Error("an unsharded engine does not own every object")
	}
}

// TestShardFilter: the wrapped ListerWatcher lists and watches only the
// shard's objects; bookmarks pass.
func TestShardFilter(t *testing.T) {
	shard := Shard{Index: 1, Total: 2}
	var items []*object.Object
	var owned []string
	for i := range 20 {
		o := obj(fmt.Sprintf("cm-%d", i), "u", "1")
		items = append(items, o)
		if shard.owns("ns", o.Name) {
			owned = append(owned, o.Name)
		}
	}
	fw := apiwatch.NewFake()
	lw := shard.filter(&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &object.List{Items: append([]*object.Object(nil), items...)}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (apiwatch.Interface, error) { return fw, nil },
	})
	list, err := cache.ToListerWatcherWithContext(lw).ListWithContext(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, it := range list.(*object.List).Items {
		listed = append(listed, it.Name)
	}
	if fmt.Sprint(listed) != fmt.Sprint(owned) || len(owned) == 0 || len(owned) == len(items) {
		t.Errorf("listed %v, want the shard's %v", listed, owned)
	}
	w, err := cache.ToListerWatcherWithContext(lw).WatchWithContext(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range items {
			fw.Modify(items[i])
		}
		fw.Action(apiwatch.Bookmark, obj("", "", "99"))
		fw.Stop()
	}()
	var watched []string
	bookmarks := 0
	for ev := range w.ResultChan() {
		if ev.Type == apiwatch.Bookmark {
			bookmarks++
			continue
		}
		watched = append(watched, ev.Object.(*object.Object).Name)
	}
	if fmt.Sprint(watched) != fmt.Sprint(owned) || bookmarks != 1 {
		t.Errorf("watched %v and %d bookmarks, want %v and 1", watched, bookmarks, owned)
	}
}
