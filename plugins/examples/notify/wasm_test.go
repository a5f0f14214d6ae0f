package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// wasmPath is the plugin built for the real host; empty with -short.
var wasmPath string

func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }

// TestWasm posts through the real host to a webhook on loopback.
func TestWasm(t *testing.T) {
	if wasmPath == "" {
		t.Skip("-short: plugin not built")
	}
	bodies := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- r.URL.Path + " " + string(b)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	cfg := map[string]any{"webhook_url": srv.URL + "/hook/secret", "link": "https://console.example.com/{key}"}
	res := wasmtest.Harness{Path: wasmPath, Config: cfg, AllowedHosts: []string{u.Host}}.Compare(t, event(sdk.Deleted))
	if res.Err != nil || len(res.Records) != 1 {
		t.Fatalf("wasm: %+v", res)
	}
	want := `/hook/secret {"text":"deleted ConfigMap prod-a/app config (rule prod) https://console.example.com/prod-a%2Fapp%20config",` +
		`"event":"DELETED","kind":"ConfigMap","key":"prod-a/app config","gvr":"v1/configmaps","rule":"prod",` +
		`"link":"https://console.example.com/prod-a%2Fapp%20config"}`
	if got := <-bodies; got != want {
		t.Errorf("webhook got\n%s\nwant\n%s", got, want)
	}

	// Without the grant the host refuses, and the plugin's error is retryable.
	res = wasmtest.Harness{Path: wasmPath, Config: cfg}.Run(t, event(sdk.Deleted))
	if res.Kind != "error" || !strings.Contains(res.Err.Error(), "allowed_hosts") {
		t.Fatalf("without allowed_hosts: %+v, want an error", res)
	}
}
