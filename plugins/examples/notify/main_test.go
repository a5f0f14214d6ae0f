package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
)

const hook = "https://hooks.example.com/T0/B0/secret"

func event(typ string) sdktest.Event {
	return sdktest.Event{
		Header: abi.Header{Type: typ, GVR: "v1/configmaps", Namespace: "prod-a", Name: "app config", UID: "u1", Rule: "prod"},
		Object: sdktest.Object(`{"kind":"ConfigMap","metadata":{"name":"app config"}}`),
	}
}

func TestNotify(t *testing.T) {
	initial := event(sdk.Added)
	initial.Initial = true
	tests := []struct {
		name   string
		config map[string]any
		ev     sdktest.Event
		want   string // webhook body, "" for no post
	}{
		{
			name:   "updated with link",
			config: map[string]any{"link": "https://console.example.com/{namespace}/{kind}/{name}"},
			ev:     event(sdk.Updated),
			want: `{"text":"updated ConfigMap prod-a/app config (rule prod) https://console.example.com/prod-a/ConfigMap/app%20config",
				"event":"UPDATED","kind":"ConfigMap","key":"prod-a/app config","gvr":"v1/configmaps","rule":"prod",
				"link":"https://console.example.com/prod-a/ConfigMap/app%20config"}`,
		},
		{
			name: "deleted without link",
			ev:   event(sdk.Deleted),
			want: `{"text":"deleted ConfigMap prod-a/app config (rule prod)","event":"DELETED","kind":"ConfigMap",
				"key":"prod-a/app config","gvr":"v1/configmaps","rule":"prod"}`,
		},
		{name: "event type filtered out", config: map[string]any{"events": []string{"DELETED"}}, ev: event(sdk.Updated)},
		{name: "initial listing skipped", ev: initial},
		{
			name:   "initial listing included",
			config: map[string]any{"include_initial": true},
			ev:     initial,
			want: `{"text":"added ConfigMap prod-a/app config (rule prod)","event":"ADDED","kind":"ConfigMap",
				"key":"prod-a/app config","gvr":"v1/configmaps","rule":"prod"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := map[string]any{"webhook_url": hook}
			for k, v := range tt.config {
				cfg[k] = v
			}
			res := sdktest.Harness{Config: cfg}.Run(tt.ev)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if tt.want == "" {
				if len(res.Requests)+len(res.Records) != 0 {
					t.Fatalf("got requests %v and records %s, want none", res.Requests, res.Records)
				}
				return
			}
			if len(res.Requests) != 1 || res.Requests[0].URL != hook {
				t.Fatalf("requests = %v, want one to %s", res.Requests, hook)
			}
			assertJSON(t, res.Requests[0].Body, tt.want)
			if len(res.Records) != 1 || !strings.Contains(string(res.Records[0]), `"status":200`) {
				t.Fatalf("records = %s, want one with status 200", res.Records)
			}
		})
	}
}

func TestNotifyFailures(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]any
		http    func(string, []byte) (int, []byte, error)
		wantErr string
	}{
		{name: "no webhook", config: map[string]any{}, wantErr: "webhook_url is required"},
		{
			name: "webhook down", config: map[string]any{"webhook_url": hook},
			http:    func(string, []byte) (int, []byte, error) { return 503, []byte("try later"), nil },
			wantErr: "webhook answered 503: try later",
		},
		{
			name: "host not allowed", config: map[string]any{"webhook_url": hook},
			http:    func(string, []byte) (int, []byte, error) { return 0, nil, sdk.ErrNotAllowed },
			wantErr: "allowed_hosts",
		},
		{
			name: "request failed", config: map[string]any{"webhook_url": hook},
			http:    func(string, []byte) (int, []byte, error) { return 0, nil, errors.New("connection refused") },
			wantErr: "request failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sdktest.Harness{Config: tt.config, HTTP: tt.http}.Run(event(sdk.Updated))
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", res.Err, tt.wantErr)
			}
			if len(res.Records) != 0 {
				t.Fatalf("records = %s, want none", res.Records)
			}
		})
	}
}

func assertJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("got  %s\nwant %s", gb, wb)
	}
}
