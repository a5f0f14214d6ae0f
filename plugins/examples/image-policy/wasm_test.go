package main

import (
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
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
	ev := sdktest.Event{
		Header: abi.Header{Type: sdk.Added, GVR: "apps/v1/deployments", Namespace: "prod", Name: "web"},
		Object: deployment(`[{"name":"app","image":"nginx:1.27"}]`, `[]`),
	}
	cfg := map[string]any{"allowed_registries": []string{"registry.example.com"}}
	if res := (wasmtest.Harness{Path: wasmPath, Config: cfg}).Compare(t, ev); res.Err != nil || len(res.Records) != 3 {
		t.Fatalf("wasm: %+v", res)
	}
}
