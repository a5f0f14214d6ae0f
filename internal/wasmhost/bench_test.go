package wasmhost_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// Run with: go test -run '^$' -bench . -benchmem ./internal/wasmhost/
// The table is in plugins/sdk/README.md.

// Plugins only the benchmarks need, built on first use.
var (
	changelogWasm = buildOnce("../../plugins/examples/changelog")
	emptyWasm     = buildOnce("testdata/empty")
)

func buildOnce(dir string) func() (string, error) {
	return sync.OnceValues(func() (string, error) {
		path := filepath.Join(tmpDir, filepath.Base(dir)+".wasm")
		return path, wasmtest.Build(context.Background(), dir, path)
	})
}

// uninterruptible is a second host compiled without the interrupt checks
// that let a timeout stop a running call, to measure what they cost.
var uninterruptible = sync.OnceValues(func() (*wasmhost.Host, error) {
	return wasmhost.NewUninterruptible(wasmhost.Options{CacheDir: wasmtest.CacheDir(), PoolSize: 2})
})

// hosts are the two timeout mechanisms compared.
func hosts(b *testing.B) []struct {
	name string
	h    *wasmhost.Host
} {
	nh, err := uninterruptible()
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		h    *wasmhost.Host
	}{{"interrupt", host}, {"no-interrupt", nh}}
}

// benchLoad loads spec and makes sure every pool slot holds a live
// instance by calling ev twice at once, so that no instance is started
// while measuring.
func benchLoad(b *testing.B, h *wasmhost.Host, spec wasmhost.PluginSpec, ev *wasmhost.Event) *wasmhost.Plugin {
	b.Helper()
	p, err := h.Load(context.Background(), spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close(context.Background()) })
	if ev != nil {
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if _, err := p.Handle(context.Background(), ev); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
	}
	return p
}

// BenchmarkLoad is Host.Load of the 4 MB test guest: compile (or read the
// compilation cache) and start the first instance.
func BenchmarkLoad(b *testing.B) {
	ctx := context.Background()
	load := func(b *testing.B, cacheDir string) {
		h, err := wasmhost.New(wasmhost.Options{CacheDir: cacheDir, PoolSize: 1})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Load(ctx, wasmhost.PluginSpec{Name: "guest", Path: guestWasm}); err != nil {
			b.Fatal(err)
		}
		h.Close(ctx)
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir, err := os.MkdirTemp(tmpDir, "cache")
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			load(b, dir)
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
	})
	b.Run("cached", func(b *testing.B) {
		dir := b.TempDir()
		load(b, dir) // warm the cache
		for b.Loop() {
			load(b, dir)
		}
	})
}

// BenchmarkInstantiate starts (and closes) one instance of the Go guest:
// the cost of replacing a failed instance or recycling one.
func BenchmarkInstantiate(b *testing.B) {
	p := benchLoad(b, host, wasmhost.PluginSpec{Name: "guest", Path: guestWasm}, nil)
	for b.Loop() {
		if err := wasmhost.StartInstance(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCall is the fixed cost of one event: "raw" is a hand-written
// module whose handle returns at once (host side and ABI only), "sdk" a Go
// plugin with an empty handler (adds the Go runtime and the SDK).
func BenchmarkCall(b *testing.B) {
	raw := filepath.Join(tmpDir, "raw.wasm")
	if err := os.WriteFile(raw, abiModule(1).bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	empty, err := emptyWasm()
	if err != nil {
		b.Fatal(err)
	}
	ev := &wasmhost.Event{Header: abi.Header{Type: "UPDATED", GVR: "v1/configmaps", Namespace: "prod", Name: "empty", UID: "6a0f", ResourceVersion: "12345", Rule: "prod"}}
	for _, hh := range hosts(b) {
		for _, guest := range []struct{ name, path string }{{"raw", raw}, {"sdk", empty}} {
			b.Run(guest.name+"/"+hh.name, func(b *testing.B) {
				p := benchLoad(b, hh.h, wasmhost.PluginSpec{Name: guest.name, Path: guest.path}, ev)
				for b.Loop() {
					if _, err := p.Handle(context.Background(), ev); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkChangelog runs UPDATED events of about 2 KB and 20 KB through
// the changelog example, reading the changes from the host's get_changes
// ("changes") or decoding both objects in the guest ("full");
// "parallel" is two workers sharing one plugin (ns/op is then wall time per
// event).
func BenchmarkChangelog(b *testing.B) {
	path, err := changelogWasm()
	if err != nil {
		b.Fatal(err)
	}
	for _, hh := range hosts(b) {
		for _, size := range []int{2 << 10, 20 << 10} {
			ev, n := updateOfSize(size)
			for _, mode := range []string{"changes", "full"} {
				cfg := json.RawMessage(fmt.Sprintf(`{"full_decode":%v}`, mode == "full"))
				p := benchLoad(b, hh.h, wasmhost.PluginSpec{Name: "changelog", Path: path, Config: cfg}, ev)
				check(b, p, ev)
				name := fmt.Sprintf("%dKB/%s/%s", size>>10, mode, hh.name)
				b.Run(name, func(b *testing.B) {
					b.SetBytes(int64(n))
					for b.Loop() {
						if _, err := p.Handle(context.Background(), ev); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.Run(name+"/parallel", func(b *testing.B) {
					b.SetBytes(int64(n))
					var next atomic.Int64
					var wg sync.WaitGroup
					for range 2 {
						wg.Go(func() {
							for next.Add(1) <= int64(b.N) {
								if _, err := p.Handle(context.Background(), ev); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
				})
			}
		}
	}
}

// BenchmarkChangelogConfigMap is the event of `make bench-e2e`: an UPDATED
// ConfigMap of about 1 KB whose data.rev changed, through the changelog
// example configured with fields [data], one worker.
func BenchmarkChangelogConfigMap(b *testing.B) {
	path, err := changelogWasm()
	if err != nil {
		b.Fatal(err)
	}
	ev := configMapUpdate()
	for _, hh := range hosts(b) {
		p := benchLoad(b, hh.h, wasmhost.PluginSpec{Name: "changelog", Path: path, Config: json.RawMessage(`{"fields":["data"]}`)}, ev)
		check(b, p, ev)
		b.Run(hh.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := p.Handle(context.Background(), ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// configMapUpdate is an update of one of bench-e2e's ConfigMaps.
func configMapUpdate() *wasmhost.Event {
	cm := func(rev, rv string) map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{
				"name": "bench-42", "namespace": "bench", "uid": "0d6c7a52-1f0e-4c1b-9d55-5e0c2b7f9a10",
				"resourceVersion": rv, "creationTimestamp": "2026-01-01T00:00:00Z",
				"labels": map[string]any{"app": "bench", "tier": "web"},
				"managedFields": []any{map[string]any{
					"manager": "benche2e", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
					"fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:data": map[string]any{".": map[string]any{}, "f:payload": map[string]any{}, "f:rev": map[string]any{}}},
				}},
			},
			"data": map[string]any{"payload": strings.Repeat("x", 900), "rev": rev},
		}
	}
	return &wasmhost.Event{
		Header:    abi.Header{Type: "UPDATED", GVR: "v1/configmaps", Namespace: "bench", Name: "bench-42", UID: "0d6c7a52-1f0e-4c1b-9d55-5e0c2b7f9a10", ResourceVersion: "1001", Rule: "resources[0]"},
		Object:    cm("1", "1001"),
		OldObject: cm("0", "1000"),
	}
}

// check makes sure the benchmark measures a real diff.
func check(b *testing.B, p *wasmhost.Plugin, ev *wasmhost.Event) {
	res, err := p.Handle(context.Background(), ev)
	if err != nil || len(res.Records) != 1 {
		b.Fatalf("changelog: %v %s", err, res.Records)
	}
}

// updateOfSize returns an UPDATED Deployment event whose object is about
// size bytes of JSON, and that size. As in real clusters most of the bulk
// is managedFields and the last-applied annotation, outside the compared
// fields (spec, data); the update changes replicas and one image.
func updateOfSize(size int) (*wasmhost.Event, int) {
	for envs := 1; ; envs++ {
		old, cur := deployment(envs, 2, "app:1"), deployment(envs, 3, "app:2")
		b, _ := json.Marshal(cur)
		if len(b) >= size {
			return &wasmhost.Event{
				Header:    abi.Header{Type: "UPDATED", GVR: "apps/v1/deployments", Namespace: "prod", Name: "web", UID: "6a0f", ResourceVersion: "12346", Rule: "prod"},
				Object:    cur,
				OldObject: old,
			}, len(b)
		}
	}
}

func deployment(envs int, replicas int64, image string) map[string]any {
	var env, managed []any
	for i := range envs {
		env = append(env, map[string]any{"name": fmt.Sprintf("SETTING_%d", i), "value": fmt.Sprintf("value-%d", i)})
	}
	spec := map[string]any{
		"replicas": replicas,
		"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
			"spec": map[string]any{"containers": []any{map[string]any{
				"name": "app", "image": image, "env": env[:min(len(env), 4)],
				"resources": map[string]any{"limits": map[string]any{"cpu": "1", "memory": "1Gi"}},
			}}},
		},
	}
	lastApplied, _ := json.Marshal(map[string]any{"spec": spec, "env": env})
	for i := range envs / 2 {
		managed = append(managed, map[string]any{
			"manager": fmt.Sprintf("controller-%d", i), "operation": "Update", "apiVersion": "apps/v1",
			"time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
			"fieldsV1": map[string]any{"f:spec": map[string]any{"f:replicas": map[string]any{}, "f:template": map[string]any{}}},
		})
	}
	return map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{
			"name": "web", "namespace": "prod", "uid": "6a0f", "resourceVersion": "12346", "generation": int64(7),
			"labels":        map[string]any{"app": "web", "app.kubernetes.io/name": "web"},
			"annotations":   map[string]any{"kubectl.kubernetes.io/last-applied-configuration": string(lastApplied)},
			"managedFields": managed,
		},
		"spec":   spec,
		"status": map[string]any{"replicas": replicas, "readyReplicas": replicas, "observedGeneration": int64(7)},
	}
}
