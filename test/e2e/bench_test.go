package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/faro-dev/faro/internal/daemon"
)

const benchObjects = 300

// createMany creates n ConfigMaps in ns from 8 goroutines.
func createMany(b *testing.B, ns string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				_, err := kube.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)},
					Data:       map[string]string{"k": "v"},
				}, metav1.CreateOptions{})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkThroughput: N ConfigMaps created against the local apiserver;
// the time until Faro has logged all N, against a plain dynamic informer
// that only counts events (the ceiling), in the same run.
func BenchmarkThroughput(b *testing.B) {
	b.Run("faro", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ns := createNamespace(b, "bench-faro")
			f := startFaro(b, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns),
				func(o *daemon.Options) { o.LogLevel, o.Workers = "info", 4 })
			b.StartTimer()
			createMany(b, ns, benchObjects)
			f.waitFor(2*time.Minute, "all events", func(evs []event, _ []string) bool { return len(evs) >= benchObjects })
			b.StopTimer()
			f.stop()
			b.StartTimer()
		}
		b.ReportMetric(float64(benchObjects*b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("informer-ceiling", func(b *testing.B) {
		gvr := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
		for b.Loop() {
			b.StopTimer()
			ns := createNamespace(b, "bench-inf")
			var n atomic.Int64
			done := make(chan struct{})
			inf := dynamicinformer.NewFilteredDynamicInformer(dyn, gvr, ns, 0, cache.Indexers{}, nil).Informer()
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) {
				if n.Add(1) == benchObjects {
					close(done)
				}
			}})
			ctx, cancel := context.WithCancel(context.Background())
			go inf.RunWithContext(ctx)
			cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
			b.StartTimer()
			createMany(b, ns, benchObjects)
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				b.Fatal("informer did not see all objects")
			}
			b.StopTimer()
			cancel()
			b.StartTimer()
		}
		b.ReportMetric(float64(benchObjects*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkReloadLatency: one op is a write of a 100-entry config (one
// entry's pattern changed) until the new rules are live (the daemon logged
// the reload, which it does after the swap). It includes the 25 ms debounce.
func BenchmarkReloadLatency(b *testing.B) {
	ns := createNamespace(b, "bench-reload")
	config := func(gen int) string {
		var sb strings.Builder
		sb.WriteString("resources:\n")
		for i := range 100 {
			fmt.Fprintf(&sb, "  - gvr: v1/configmaps\n    namespace_patterns: [\"%s.*\"]\n    name_pattern: \"app-%d-%d-.*\"\n    label_selector: \"tier in (web, api)\"\n    cel: \"has(object.data) && object.data.size() > %d\"\n", ns, i, gen*boolInt(i == 50), i%5)
		}
		return sb.String()
	}
	f := startFaro(b, config(0), func(o *daemon.Options) { o.LogLevel = "info" })
	b.ResetTimer()
	gen := 0
	for b.Loop() {
		gen++
		f.rewrite(config(gen), reloaded)
	}
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}
