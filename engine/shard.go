package engine

import (
	"context"
	"hash/fnv"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/watchlist"
)

// Sharding splits the objects of every resource between replicas by a
// stable hash of namespace/name, so that one object's whole life (a
// re-create included) stays on one replica. It is a filter around an
// informer's ListerWatcher, as in kube-state-metrics: the informer never
// sees another shard's objects.

// Shard says which part of the objects a replica handles: those whose hash
// modulo Total is Index. A zero Shard (or Total 1) is every object.
type Shard struct {
	Index, Total int
}

// owns reports whether the object at ns/name belongs to the shard.
func (s Shard) owns(ns, name string) bool {
	if s.Total <= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(ns))
	h.Write([]byte{'/'})
	h.Write([]byte(name))
	return h.Sum64()%uint64(s.Total) == uint64(s.Index)
}

func (s Shard) ownsObject(obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	return err != nil || s.owns(m.GetNamespace(), m.GetName())
}

// shardedListWatch filters what lw lists and watches to the shard's objects.
type shardedListWatch struct {
	lw    cache.ListerWatcherWithContext
	inner cache.ListerWatcher
	shard Shard
}

func (s Shard) filter(lw cache.ListerWatcher) cache.ListerWatcher {
	if s.Total <= 1 {
		return lw
	}
	return &shardedListWatch{lw: cache.ToListerWatcherWithContext(lw), inner: lw, shard: s}
}

func (f *shardedListWatch) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	list, err := f.lw.ListWithContext(ctx, o)
	if err != nil {
		return nil, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	kept := items[:0]
	for _, it := range items {
		if f.shard.ownsObject(it) {
			kept = append(kept, it)
		}
	}
	return list, meta.SetList(list, kept)
}

func (f *shardedListWatch) WatchWithContext(ctx context.Context, o metav1.ListOptions) (apiwatch.Interface, error) {
	w, err := f.lw.WatchWithContext(ctx, o)
	if err != nil {
		return nil, err
	}
	return filterWatch(w, func(ev apiwatch.Event) (apiwatch.Event, bool) {
		switch ev.Type {
		case apiwatch.Added, apiwatch.Modified, apiwatch.Deleted:
			return ev, f.shard.ownsObject(ev.Object)
		}
		return ev, true // bookmarks and errors
	}), nil
}

// List and Watch serve callers without a context.
func (f *shardedListWatch) List(o metav1.ListOptions) (runtime.Object, error) {
	return f.ListWithContext(context.Background(), o)
}

func (f *shardedListWatch) Watch(o metav1.ListOptions) (apiwatch.Interface, error) {
	return f.WatchWithContext(context.Background(), o)
}

// IsWatchListSemanticsUnSupported keeps what the wrapped ListerWatcher says
// of watch-list streaming.
func (f *shardedListWatch) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(f.inner)
}
