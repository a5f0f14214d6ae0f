package main

import (
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// wasmPath is the plugin built for the real host; empty with -short.
var wasmPath string

func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }

// TestWasm runs the built plugin through the real host and checks it does
// what the native harness does, in both decoding modes and with a config
// it must refuse.
func TestWasm(t *testing.T) {
	if wasmPath == "" {
		t.Skip("-short: plugin not built")
	}
	ev := sdktest.Event{
		Header:    abi.Header{Type: sdk.Updated, GVR: "v1/configmaps", Namespace: "prod", Name: "app", ResourceVersion: "9"},
		OldObject: sdktest.Object(`{"kind":"ConfigMap","data":{"a":"1","b":"x","app.conf":"k=v"},"spec":{"n":[1,2]}}`),
		Object:    sdktest.Object(`{"kind":"ConfigMap","data":{"a":"2","c":"y","app.conf":"k=w"},"spec":{"n":[1,3,4]}}`),
	}
	for _, tt := range []struct {
		config  map[string]any
		records int
		wantErr string
	}{
		{config: map[string]any{"full_decode": false}, records: 1},
		{config: map[string]any{"full_decode": true}, records: 1},
		{config: map[string]any{"fieldz": []string{"data"}}, wantErr: `config: unknown key "fieldz"`},
	} {
		res := wasmtest.Harness{Path: wasmPath, Config: tt.config}.Compare(t, ev)
		if len(res.Records) != tt.records || tt.wantErr == "" && res.Err != nil ||
			tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
			t.Errorf("config %v: %d records, err %v; want %d, %q", tt.config, len(res.Records), res.Err, tt.records, tt.wantErr)
		}
	}
}
