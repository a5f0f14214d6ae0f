package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// wasmPath is the plugin built for the real host; empty with -short.
var wasmPath string

func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }

// TestWasm runs the built plugin through the real host and checks it emits
// what the native harness sees, in both decoding modes.
func TestWasm(t *testing.T) {
	if wasmPath == "" {
		t.Skip("-short: plugin not built")
	}
	ev := sdktest.Event{Type: sdk.Updated, GVR: "v1/configmaps", Namespace: "prod", Name: "app", ResourceVersion: "9",
		OldObject: sdktest.Object(`{"kind":"ConfigMap","data":{"a":"1","b":"x","app.conf":"k=v"},"spec":{"n":[1,2]}}`),
		Object:    sdktest.Object(`{"kind":"ConfigMap","data":{"a":"2","c":"y","app.conf":"k=w"},"spec":{"n":[1,3,4]}}`)}
	for _, full := range []bool{false, true} {
		cfg := map[string]any{"full_decode": full}
		native := sdktest.Harness{Config: cfg}.Run(ev)
		if native.Err != nil || len(native.Records) != 1 {
			t.Fatalf("native: %+v", native)
		}
		p := wasmtest.Load(t, wasmhost.PluginSpec{Name: "changelog", Path: wasmPath, Config: []byte(fmt.Sprintf(`{"full_decode":%v}`, full))})
		res, err := p.Handle(context.Background(), wasmtest.Event(ev))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) != 1 || string(res.Records[0]) != string(native.Records[0]) {
			t.Fatalf("full_decode=%v: wasm records %s\nnative %s", full, res.Records, native.Records)
		}
	}
}
