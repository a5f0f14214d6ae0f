package main

import (
	"context"
	"testing"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// wasmPath is the plugin built for the real host; empty with -short.
var wasmPath string

func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }

// TestWasm checks the built plugin emits what the native harness sees.
func TestWasm(t *testing.T) {
	if wasmPath == "" {
		t.Skip("-short: plugin not built")
	}
	ev := sdktest.Event{Type: sdk.Added, GVR: "apps/v1/deployments", Namespace: "prod", Name: "web",
		Object: deployment(`[{"name":"app","image":"nginx:1.27"}]`, `[]`)}
	cfg := map[string]any{"allowed_registries": []string{"registry.example.com"}}
	native := sdktest.Harness{Config: cfg}.Run(ev)
	if native.Err != nil || len(native.Records) != 3 {
		t.Fatalf("native: %+v", native)
	}
	p := wasmtest.Load(t, wasmhost.PluginSpec{Name: "image-policy", Path: wasmPath,
		Config: []byte(`{"allowed_registries":["registry.example.com"]}`)})
	res, err := p.Handle(context.Background(), wasmtest.Event(ev))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != len(native.Records) {
		t.Fatalf("wasm records %s\nnative %s", res.Records, native.Records)
	}
	for i := range res.Records {
		if string(res.Records[i]) != string(native.Records[i]) {
			t.Errorf("record %d: wasm %s, native %s", i, res.Records[i], native.Records[i])
		}
	}
}
