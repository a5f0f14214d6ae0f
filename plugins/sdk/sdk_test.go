package sdk_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
)

// The handler under test: the event's name picks what it exercises.
func init() {
	if err := sdk.Config(&declared); err != nil {
		panic(err) // natively the decode is deferred to each run
	}
	sdk.Handle(handle)
}

type testConfig struct {
	Greeting string `json:"greeting"`
	Level    string `json:"level"`
}

// stopLoop ends the "loop" handler.
var stopLoop atomic.Bool

// declared is the configuration declared in init, with its default level.
var declared = testConfig{Level: "info"}

func handle(ev sdk.Event) error {
	switch ev.Name {
	case "fields":
		obj, err := ev.Object()
		if err != nil {
			return err
		}
		old, err := ev.OldObject()
		if err != nil {
			return err
		}
		var replicas int
		if err := ev.Field("spec", "replicas").Decode(&replicas); err != nil {
			return err
		}
		return sdk.Emit(map[string]any{
			"key": ev.Key(), "kind": ev.Kind(), "replicas": replicas,
			"label":   ev.Field("metadata", "labels", "app.kubernetes.io/name").String(),
			"image":   ev.Field("spec", "containers", "0", "image").String(),
			"missing": ev.Field("spec", "nope").Exists(),
			"decode":  errors.Is(ev.Field("nope").Decode(new(any)), sdk.ErrNotFound),
			"old":     ev.OldField("spec", "replicas").Raw(),
			"objects": obj != nil && old == nil,
		})
	case "config":
		var cfg testConfig
		if err := sdk.Config(&cfg); err != nil {
			return err
		}
		return sdk.Emit(map[string]any{"declared": declared, "in_handler": cfg})
	case "invalid":
		err := sdk.Emit([]string{"a"})
		if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "a record must be a JSON object, got an array") {
			return fmt.Errorf("an array record: %v", err)
		}
		return sdk.Emit(func() {}) // cannot be marshalled
	case "flood":
		for {
			if err := sdk.Emit(map[string]string{"pad": strings.Repeat("x", 100)}); err != nil {
				return err
			}
		}
	case "panic":
		panic("oops")
	case "loop":
		for !stopLoop.Load() {
		}
		return nil
	case "log":
		l := sdk.Logger().With("plugin", "test").WithGroup("g")
		l.Warn("grouped", "k", "v w", slog.Group("sub", "n", 1))
		sdk.LogDebug("debug")
		sdk.LogInfo("info", "empty", "")
		sdk.LogError("error")
		return nil
	case "http":
		status, resp, err := sdk.HTTPPost("https://hooks.example.com/x", []byte(`{}`))
		if err != nil {
			return err
		}
		return sdk.Emit(map[string]any{"status": status, "resp": string(resp)})
	}
	return errors.New("unknown: " + ev.Name)
}

func TestFields(t *testing.T) {
	res := sdktest.Run(sdktest.Event{
		Header: abi.Header{Type: sdk.Added, Namespace: "ns", Name: "fields"},
		Object: sdktest.Object(`{
		"kind":"Deployment","metadata":{"labels":{"app.kubernetes.io/name":"web"}},
		"spec":{"replicas":3,"containers":[{"image":"nginx"}]}}`),
	})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := `{"decode":true,"image":"nginx","key":"ns/fields","kind":"Deployment","label":"web","missing":false,"objects":true,"old":null,"replicas":3}`
	if len(res.Records) != 1 || string(res.Records[0]) != want {
		t.Fatalf("records %s\nwant %s", res.Records, want)
	}
}

// TestConfig runs in order: each run decodes the declared configuration
// afresh from its defaults.
func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		config  any
		want    string
		wantErr string
	}{
		{name: "given", config: map[string]string{"greeting": "hi", "level": "debug"},
			want: `{"declared":{"greeting":"hi","level":"debug"},"in_handler":{"greeting":"hi","level":"debug"}}`},
		{name: "none: defaults again",
			want: `{"declared":{"greeting":"","level":"info"},"in_handler":{"greeting":"","level":""}}`},
		{name: "unknown key", config: map[string]string{"greting": "hi"}, wantErr: `config: unknown key "greting"`},
		{name: "wrong type", config: map[string]int{"level": 3}, wantErr: `config: key "level": want string, got JSON number`},
		{name: "not an object", config: []int{1}, wantErr: "config: "},
	}
	for _, tt := range tests {
		res := sdktest.Harness{Config: tt.config}.Run(sdktest.Event{Header: abi.Header{Name: "config"}})
		if tt.wantErr != "" {
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, res.Err, tt.wantErr)
			}
			continue
		}
		if res.Err != nil || len(res.Records) != 1 || string(res.Records[0]) != tt.want {
			t.Errorf("%s: %+v\nwant %s", tt.name, res, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct{ name, kind, want string }{
		{"invalid", "error", "sdk: emit: json: unsupported type: func()"},
		{"flood", "output", "output over the per-event limit of 1000 records"},
		{"panic", "panic", "panic: oops"},
		{"other", "error", "unknown: other"},
	}
	for _, tt := range tests {
		res := sdktest.Run(sdktest.Event{Header: abi.Header{Name: tt.name}})
		if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) || res.Kind != tt.kind {
			t.Errorf("%s: err = %v (kind %q), want %q (kind %q)", tt.name, res.Err, res.Kind, tt.want, tt.kind)
		}
	}
	res := sdktest.Run(sdktest.Event{Header: abi.Header{Name: "panic"}})
	if len(res.Logs) != 1 || res.Logs[0].Level != slog.LevelError || !strings.Contains(res.Logs[0].Msg, "sdk_test.handle") {
		t.Errorf("panic stack not logged: %+v", res.Logs)
	}
}

func TestLog(t *testing.T) {
	res := sdktest.Run(sdktest.Event{Header: abi.Header{Name: "log"}})
	want := []sdktest.Log{
		{Level: slog.LevelWarn, Msg: `grouped plugin=test g.k="v w" g.sub.n=1`},
		{Level: slog.LevelDebug, Msg: "debug"},
		{Level: slog.LevelInfo, Msg: `info empty=""`},
		{Level: slog.LevelError, Msg: "error"},
	}
	if res.Err != nil || len(res.Logs) != len(want) {
		t.Fatalf("%+v", res)
	}
	for i := range want {
		if res.Logs[i] != want[i] {
			t.Errorf("log %d = %+v, want %+v", i, res.Logs[i], want[i])
		}
	}
}

func TestHTTPPost(t *testing.T) {
	tests := []struct {
		name    string
		http    func(string, []byte) (int, []byte, error)
		want    string
		wantErr error
	}{
		{name: "default answer", want: `{"resp":"","status":200}`},
		{name: "answer", http: func(string, []byte) (int, []byte, error) { return 404, []byte("no"), nil }, want: `{"resp":"no","status":404}`},
		{name: "denied", http: func(string, []byte) (int, []byte, error) { return 0, nil, sdk.ErrNotAllowed }, wantErr: sdk.ErrNotAllowed},
		{name: "failed", http: func(string, []byte) (int, []byte, error) { return 0, nil, errors.New("x") }, wantErr: sdk.ErrHTTPFailed},
	}
	for _, tt := range tests {
		res := sdktest.Harness{HTTP: tt.http}.Run(sdktest.Event{Header: abi.Header{Name: "http"}})
		if len(res.Requests) != 1 || res.Requests[0].URL != "https://hooks.example.com/x" || string(res.Requests[0].Body) != "{}" {
			t.Errorf("%s: requests %+v", tt.name, res.Requests)
		}
		if tt.wantErr != nil {
			// Errors cross the host boundary as messages.
			if res.Err == nil || res.Err.Error() != tt.wantErr.Error() {
				t.Errorf("%s: err = %v, want %v", tt.name, res.Err, tt.wantErr)
			}
			continue
		}
		if res.Err != nil || len(res.Records) != 1 || string(res.Records[0]) != tt.want {
			t.Errorf("%s: %+v", tt.name, res)
		}
	}
}

// TestTimeout: a handler that does not return fails the run after the
// harness's timeout instead of hanging the test; until it returns, later
// runs fail too.
func TestTimeout(t *testing.T) {
	defer stopLoop.Store(false)
	h := sdktest.Harness{Timeout: 50 * time.Millisecond}
	res := h.Run(sdktest.Event{Header: abi.Header{Name: "loop"}})
	if res.Kind != "timeout" || res.Err == nil || !strings.Contains(res.Err.Error(), "handler still running after 50ms") {
		t.Fatalf("looping handler: %+v", res)
	}
	if res := h.Run(sdktest.Event{Header: abi.Header{Name: "log"}}); res.Kind != "timeout" {
		t.Fatalf("run while the loop goes on: %+v", res)
	}
	stopLoop.Store(true)
	if res := sdktest.Run(sdktest.Event{Header: abi.Header{Name: "log"}}); res.Err != nil {
		t.Fatalf("run after the loop ended: %+v", res)
	}
}
