package main

import (
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

var wasmPath string // "" with -short

func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }

var ev = sdktest.Event{
	Header: abi.Header{Type: sdk.Added, GVR: "v1/configmaps", Namespace: "prod", Name: "app"},
	Object: sdktest.Object(`{"kind":"ConfigMap","data":{"level":"debug"}}`),
}

const want = `{"event":"ADDED","key":"prod/app","kind":"ConfigMap","label":"ext","value":{"level":"debug"}}`

func TestNativeHarness(t *testing.T) {
	res := sdktest.Harness{Config: map[string]any{"label": "ext"}}.Run(ev)
	if res.Err != nil || len(res.Records) != 1 || string(res.Records[0]) != want {
		t.Fatalf("native: %+v", res)
	}
	if len(res.Logs) != 1 || !strings.Contains(res.Logs[0].Msg, "handled") {
		t.Errorf("native logs: %+v", res.Logs)
	}
}

// TestWasmHarness runs the built module through Faro's host and checks it
// emits what the native harness does.
func TestWasmHarness(t *testing.T) {
	if wasmPath == "" {
		t.Fatal("wasmtest.Main built no module")
	}
	config := map[string]any{"label": "ext"}
	res := wasmtest.Harness{Path: wasmPath, Config: config}.Run(t, ev)
	native := sdktest.Harness{Config: config}.Run(ev)
	if res.Err != nil || res.Kind != "" || len(res.Records) != 1 || string(res.Records[0]) != want {
		t.Fatalf("wasm: %+v", res)
	}
	if len(native.Records) != 1 || string(native.Records[0]) != string(res.Records[0]) {
		t.Fatalf("wasm record %s, native %+v", res.Records[0], native)
	}
	wasmtest.Harness{Path: wasmPath, Config: config}.Compare(t, ev)
	t.Logf("external wasm record: %s", res.Records[0])
}

// TestUnknownKey: a typo in the config is refused by both harnesses.
func TestUnknownKey(t *testing.T) {
	if wasmPath == "" {
		t.Fatal("wasmtest.Main built no module")
	}
	config := map[string]any{"fieldz": "data"}
	const wantErr = `config: unknown key "fieldz"`
	for name, res := range map[string]sdktest.Result{
		"wasm":   wasmtest.Harness{Path: wasmPath, Config: config}.Run(t, ev),
		"native": sdktest.Harness{Config: config}.Run(ev),
	} {
		if res.Kind != "config" || res.Err == nil || !strings.Contains(res.Err.Error(), wantErr) || len(res.Records) != 0 {
			t.Errorf("%s: kind %q, err %v, %d records; want kind config, %q", name, res.Kind, res.Err, len(res.Records), wantErr)
		}
	}
	if !t.Failed() {
		t.Logf("external config check: %s", wantErr)
	}
}
