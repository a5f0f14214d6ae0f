package daemon

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
	"github.com/faro-dev/faro/rules"
)

// guestWasm is wasmhost's test guest, whose event name picks its
// behaviour; changelogWasm the changelog example.
var guestWasm, changelogWasm string

func TestMain(m *testing.M) {
	wasmtest.MainBuilding(m, map[string]*string{"../wasmhost/testdata/guest": &guestWasm, "../../plugins/examples/changelog": &changelogWasm})
}

// BenchmarkRouterChangelog is the daemon's whole plugin stage for the event
// of `make bench-e2e` (an UPDATED 1 KB ConfigMap, changelog with fields
// [data]): adapting the event, the call, and the JSON PLUGIN line.
func BenchmarkRouterChangelog(b *testing.B) {
	if changelogWasm == "" {
		b.Skip("-short: plugin not built")
	}
	ctx := context.Background()
	host, err := wasmhost.New(wasmhost.Options{CacheDir: wasmtest.CacheDir(), PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close(ctx)
	cfg, err := config.Parse([]byte(fmt.Sprintf("plugins:\n  - name: changelog\n    path: %s\n    config: {fields: [data]}\nresources:\n  - {gvr: v1/configmaps, plugins: [changelog]}\n", changelogWasm)), "faro.yaml")
	if err != nil {
		b.Fatal(err)
	}
	set, err := loadPlugins(ctx, host, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer set.closeUnshared(ctx, nil)
	r := &router{events: hclog.New(&hclog.LoggerOptions{Output: io.Discard, JSONFormat: true}), diag: hclog.NewNullLogger(), json: true}
	r.swap(set)
	cm := func(rev string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "bench-42", "namespace": "bench", "resourceVersion": "100" + rev,
				"labels": map[string]any{"app": "bench", "tier": "web"}},
			"data": map[string]any{"payload": strings.Repeat("x", 900), "rev": rev},
		}}
	}
	m := &engine.Matched{Type: config.Updated, Object: cm("1"), OldObject: cm("0"), Rule: &rules.Rule{Rule: config.Rule{ID: "resources[0]"}}}
	for b.Loop() {
		if err := r.Handle(ctx, m, "changelog"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRetryOn: the router hands back (to be retried) exactly the failures
// of the kinds the plugin's retry_on lists.
func TestRetryOn(t *testing.T) {
	tests := []struct {
		name      string
		retryOn   string // YAML, "" for unset
		behaviour string // the guest's behaviour
		retried   bool
	}{
		{name: "error retried by default", behaviour: "error", retried: true},
		{name: "panic not retried by default", behaviour: "panic", retried: false},
		{name: "trap not retried by default", behaviour: "trap", retried: false},
		{name: "panic retried when listed", retryOn: "[error, panic]", behaviour: "panic", retried: true},
		{name: "error not retried when not listed", retryOn: "[panic]", behaviour: "error", retried: false},
		{name: "nothing retried", retryOn: "[]", behaviour: "error", retried: false},
		{name: "success", behaviour: "empty", retried: false},
	}
	ctx := context.Background()
	host, err := wasmhost.New(wasmhost.Options{CacheDir: wasmtest.CacheDir(), PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := fmt.Sprintf("plugins:\n  - name: guest\n    path: %s\n    timeout: 10s\n", guestWasm)
			if tt.retryOn != "" {
				yaml += "    retry_on: " + tt.retryOn + "\n"
			}
			cfg, err := config.Parse([]byte(yaml+"resources:\n  - {gvr: v1/configmaps, plugins: [guest]}\n"), "faro.yaml")
			if err != nil {
				t.Fatal(err)
			}
			set, err := loadPlugins(ctx, host, cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer set.closeUnshared(ctx, nil)
			r := &router{events: hclog.NewNullLogger(), diag: hclog.NewNullLogger()}
			r.swap(set)
			obj := &unstructured.Unstructured{Object: map[string]any{"kind": "ConfigMap"}}
			obj.SetName(tt.behaviour)
			err = r.Handle(ctx, &engine.Matched{Type: config.Added, Object: obj, Rule: &rules.Rule{Rule: config.Rule{ID: "resources[0]"}}}, "guest")
			if retried := err != nil; retried != tt.retried {
				t.Fatalf("retried = %v (err %v), want %v", retried, err, tt.retried)
			}
		})
	}
}

func TestRetryOnUnknownKind(t *testing.T) {
	cfg, err := config.Parse([]byte(fmt.Sprintf(`plugins:
  - name: guest
    path: %s
    retry_on: [error, crash]
resources:
  - {gvr: v1/configmaps, plugins: [guest]}
`, guestWasm)), "faro.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = loadPlugins(context.Background(), nil, cfg, nil)
	want := `plugins[0].retry_on[1]: unknown failure kind "crash"; kinds are error, trap, timeout, out-of-memory, output, canceled, panic`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}
