package wasmhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/abi"
)

func TestNewValidatesPoolSize(t *testing.T) {
	if _, err := wasmhost.New(wasmhost.Options{CacheDir: t.TempDir()}); err == nil {
		t.Fatal("New accepted a pool size of 0")
	}
}

// TestRuntimeStartsWithFirstModule: a Host that never loads a plugin never
// starts its runtime, and closes all the same; the first module compiled
// starts it.
func TestRuntimeStartsWithFirstModule(t *testing.T) {
	ctx := context.Background()
	for _, compile := range []bool{false, true} {
		h, err := wasmhost.New(wasmhost.Options{PoolSize: 1, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if h.RuntimeStarted() {
			t.Fatal("New started the runtime")
		}
		if compile {
			if err := h.Compile(ctx, writeModule(t, abiModule(1).bytes())); err != nil {
				t.Fatal(err)
			}
			if !h.RuntimeStarted() {
				t.Fatal("compiling a module did not start the runtime")
			}
		}
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close (module compiled: %v): %v", compile, err)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	withImport := func(im wasmImport) wasmModule {
		m := abiModule(1)
		m.imports = []wasmImport{im}
		return m
	}
	without := func(export string) wasmModule {
		m := abiModule(1)
		for i := range m.funcs {
			if m.funcs[i].export == export {
				m.funcs[i].export = ""
			}
		}
		return m
	}
	wrongHandle := abiModule(1)
	wrongHandle.funcs[2] = wasmFunc{export: "faro_handle", results: []byte{tI32}, body: i32Const(0)}
	command := abiModule(1)
	command.funcs[0].export = "_start"
	noMemory := abiModule(1)
	noMemory.noMemory = true
	bigMemory := abiModule(1)
	bigMemory.memPages = 4
	trapsAtInit := abiModule(1)
	trapsAtInit.funcs[0].body = []byte{opUnreachable}
	loopsInVersion := abiModule(1)
	loopsInVersion.funcs[1].body = loopForever
	loopsInInit := abiModule(1)
	loopsInInit.funcs[0].body = loopForever[:5]
	loopsInCheck := abiModule(1)
	loopsInCheck.funcs = append(loopsInCheck.funcs, wasmFunc{export: "faro_check", results: []byte{tI32}, body: loopForever})
	startFunction := abiModule(1)
	startFunction.start = true

	tests := []struct {
		name    string
		module  []byte
		path    *string // a built guest instead of module
		spec    wasmhost.PluginSpec
		wantErr string
		config  bool // the error is a *wasmhost.ConfigError
	}{
		{name: "not wasm", module: []byte("#!/bin/sh\necho hi\n"), wantErr: "invalid module"},
		{name: "ABI version mismatch", module: abiModule(2).bytes(), wantErr: "module speaks ABI version 2, this host speaks 1"},
		{name: "no handle export", module: without("faro_handle").bytes(),
			wantErr: `does not export "faro_handle" (it is a WASI reactor (c-shared) without Faro's SDK: import github.com/faro-dev/faro/plugins/sdk and call sdk.Handle in init)`},
		{name: "a WASI command", module: command.bytes(),
			wantErr: `does not export "_initialize" (it is a WASI command; a plugin is a reactor: build with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared)`},
		{name: "no version export", module: without("faro_abi_version").bytes(), wantErr: `does not export "faro_abi_version"`},
		{name: "no _initialize (a wasm command, not a reactor)", module: without("_initialize").bytes(), wantErr: `does not export "_initialize"`},
		{name: "no memory", module: noMemory.bytes(), wantErr: `does not export "memory"`},
		{name: "handle signature", module: wrongHandle.bytes(), wantErr: `export "faro_handle" has signature () -> (i32), the ABI wants (i32) -> (i32)`},
		{
			name:    "unknown host function",
			module:  withImport(wasmImport{module: "faro", name: "exec", params: []byte{tI32}}).bytes(),
			wantErr: "imports faro.exec, which ABI version 1 does not have",
		},
		{
			name:    "host function signature",
			module:  withImport(wasmImport{module: "faro", name: "log", params: []byte{tI32}}).bytes(),
			wantErr: "import faro.log has signature (i32) -> (), the ABI wants (i32, i32, i32) -> ()",
		},
		{
			name:    "other import module",
			module:  withImport(wasmImport{module: "env", name: "socket"}).bytes(),
			wantErr: "imports env.socket; only faro and wasi_snapshot_preview1 are available",
		},
		{
			name:    "unknown WASI function",
			module:  withImport(wasmImport{module: "wasi_snapshot_preview1", name: "sock_listen"}).bytes(),
			wantErr: "sock_listen",
		},
		{
			name: "memory over the limit", module: bigMemory.bytes(), spec: wasmhost.PluginSpec{MemoryLimit: 128 << 10},
			wantErr: "module needs 256Ki of memory to start, over its memory_limit of 128Ki",
		},
		{name: "_initialize traps", module: trapsAtInit.bytes(), wantErr: "start: plugin"},
		{name: "version loops", module: loopsInVersion.bytes(), spec: wasmhost.PluginSpec{Timeout: 50 * time.Millisecond}, wantErr: "faro_abi_version: timeout: stopped after 50ms"},
		{name: "check loops", module: loopsInCheck.bytes(), spec: wasmhost.PluginSpec{Timeout: 50 * time.Millisecond}, wantErr: "faro_check: timeout: stopped after 50ms"},
		{name: "_initialize loops", module: loopsInInit.bytes(), spec: wasmhost.PluginSpec{Timeout: 50 * time.Millisecond}, wantErr: "start: plugin bad: timeout: stopped after 10s"},
		{name: "start function", module: startFunction.bytes(), wantErr: "module has a start function; a plugin is a reactor"},
		{name: "bad config", module: abiModule(1).bytes(), spec: wasmhost.PluginSpec{Config: json.RawMessage(`{`)}, wantErr: "config is not valid JSON"},
		{name: "bad allowed host", module: abiModule(1).bytes(), spec: wasmhost.PluginSpec{AllowedHosts: []string{"https://x"}}, wantErr: `allowed host "https://x"`},
		{name: "missing file", wantErr: "no such file"},
		{name: "no handler registered", path: &declaredWasm, spec: wasmhost.PluginSpec{Config: json.RawMessage(`{"handler":false}`)},
			wantErr: "registers no handler: call sdk.Handle in init"},
		{name: "unknown config key", path: &declaredWasm, spec: wasmhost.PluginSpec{Config: json.RawMessage(`{"greting":"hi"}`)},
			wantErr: `config: unknown key "greting"`, config: true},
		{name: "config of the wrong type", path: &declaredWasm, spec: wasmhost.PluginSpec{Config: json.RawMessage(`{"greeting":1}`)},
			wantErr: `config: key "greeting": want string, got JSON number`, config: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Name = "bad"
			spec.Path = "/nonexistent/bad.wasm"
			if tt.module != nil {
				spec.Path = writeModule(t, tt.module)
			}
			if tt.path != nil {
				spec.Path = *tt.path
			}
			p, err := host.Load(context.Background(), spec)
			if err == nil {
				p.Close(context.Background())
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), spec.Path) {
				t.Fatalf("err = %v\nwant it to contain %q and the path", err, tt.wantErr)
			}
			if isConfig := errors.As(err, new(*wasmhost.ConfigError)); isConfig != tt.config {
				t.Errorf("err is a ConfigError: %v, want %v", isConfig, tt.config)
			}
		})
	}
}

func TestRawGuest(t *testing.T) {
	tests := []struct {
		name     string
		handle   []byte
		wantKind wasmhost.Kind
		wantErr  string
	}{
		{name: "ok", handle: i32Const(0)},
		{name: "handler error without message", handle: i32Const(1), wantKind: wasmhost.KindError, wantErr: "handler failed without a message"},
		{name: "unknown status", handle: i32Const(7), wantKind: wasmhost.KindOutput, wantErr: "unknown status 7"},
		{name: "trap", handle: []byte{opUnreachable}, wantKind: wasmhost.KindTrap, wantErr: "unreachable"},
		{name: "loop", handle: loopForever, wantKind: wasmhost.KindTimeout, wantErr: "stopped after 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := load(t, wasmhost.PluginSpec{Path: writeModule(t, abiModule(1, tt.handle...).bytes()), Timeout: 100 * time.Millisecond})
			for range 2 { // the second call proves the pool still serves
				_, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Type: "ADDED"}})
				checkErr(t, err, tt.wantKind, tt.wantErr)
			}
		})
	}
}

// TestLoopLetsTheRuntimeRun: a guest spinning in a loop leaves the compiled
// code often enough for a garbage collection (which stops every goroutine)
// to finish long before the call's timeout, and its module's own globals
// are untouched by the interrupt's.
func TestLoopLetsTheRuntimeRun(t *testing.T) {
	m := abiModule(1, loopForever...)
	m.globals = []int32{7, 8}
	const timeout = 5 * time.Second
	p := load(t, wasmhost.PluginSpec{Path: writeModule(t, m.bytes()), Timeout: timeout})
	done := make(chan error)
	go func() {
		_, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Type: "ADDED"}})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	runtime.GC()
	if took := time.Since(start); took > timeout/2 {
		t.Errorf("a garbage collection during the loop took %v", took)
	}
	checkErr(t, <-done, wasmhost.KindTimeout, "stopped after 5s")
	got, err := wasmhost.Globals(context.Background(), p, "g0", "g1", "faro.interrupt")
	if err != nil || !slices.Equal(got, []uint64{7, 8, 0}) {
		t.Errorf("globals of a new instance: %v, %v; want [7 8 0]", got, err)
	}
}

// checkErr asserts err is nil for kind 0, else an *Error of that kind whose
// message contains msg.
func checkErr(t *testing.T, err error, kind wasmhost.Kind, msg string) {
	t.Helper()
	if kind == 0 {
		if err != nil {
			t.Fatalf("err = %v, want none", err)
		}
		return
	}
	var e *wasmhost.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *wasmhost.Error", err, err)
	}
	if e.Kind != kind || !strings.Contains(e.Error(), msg) {
		t.Fatalf("err = %v (kind %s), want kind %s containing %q", e, e.Kind, kind, msg)
	}
}

func TestFailuresAreReportedAndPoolRecovers(t *testing.T) {
	// Timeouts are tested on a plugin of their own with a short timeout;
	// the other failures get a long one, for slow -race runs on busy
	// machines.
	const timeout = 300 * time.Millisecond
	slow := load(t, wasmhost.PluginSpec{Name: "slow", MemoryLimit: 32 << 20})
	quick := load(t, wasmhost.PluginSpec{Name: "quick", Timeout: timeout})
	fillPool(t, slow)
	fillPool(t, quick)
	tests := []struct {
		behaviour string
		kind      wasmhost.Kind
		msg       string
		replaced  bool // the instance is closed and a new one started
	}{
		{"error", wasmhost.KindError, "boom", false},
		{"panic", wasmhost.KindPanic, "panic: assignment to entry in nil map", false},
		{"unknown", wasmhost.KindError, `unknown behaviour "unknown"`, false},
		{"invalid", wasmhost.KindError, "rejected by the host as invalid: a record must be a JSON object, got an array", false},
		{"flood", wasmhost.KindOutput, "output over the per-event limit of 1000 records", false},
		{"bigflood", wasmhost.KindOutput, "output over the per-event limit of 1048576 bytes: 1024100 emitted, the next record has 102410", false},
		{"trap", wasmhost.KindTrap, "panic: kaboom in a goroutine", true},
		{"exit", wasmhost.KindTrap, "exited with code 3", true},
		{"loop", wasmhost.KindTimeout, "stopped after 300ms", true},
		{"sleep", wasmhost.KindTimeout, "stopped after 300ms", true},
		{"oom", wasmhost.KindOOM, "memory_limit of 32Mi reached: fatal error: out of memory", true},
	}
	for _, tt := range tests {
		t.Run(tt.behaviour, func(t *testing.T) {
			p := slow
			if tt.kind == wasmhost.KindTimeout {
				p = quick
			}
			before := p.Stats()
			start := time.Now()
			res, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Type: "ADDED", Name: tt.behaviour}})
			if took := time.Since(start); tt.kind == wasmhost.KindTimeout && took > timeout+2*time.Second {
				t.Errorf("took %v, want about the %v timeout", took, timeout)
			}
			checkErr(t, err, tt.kind, tt.msg)
			if len(res.Records) != 0 {
				t.Errorf("a failed call returned records %s", res.Records)
			}
			fillPool(t, p) // the pool still serves, with every slot
			after := p.Stats()
			if got := after.Failures[tt.kind] - before.Failures[tt.kind]; got != 1 {
				t.Errorf("%s failures counted %d times, want 1", tt.kind, got)
			}
			if started := after.Instances - before.Instances; started != map[bool]uint64{true: 1}[tt.replaced] {
				t.Errorf("instances started: %d, want replaced=%v", started, tt.replaced)
			}
		})
	}
}

// fillPool makes as many concurrent calls as the shared host's pool has
// slots, so that afterwards each slot holds a live instance.
func fillPool(t *testing.T, p *wasmhost.Plugin) {
	t.Helper()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "nap"}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestEvent(t *testing.T) {
	p := load(t, wasmhost.PluginSpec{})
	ev := &wasmhost.Event{
		Header: abi.Header{Type: "UPDATED", GVR: "v1/configmaps", Namespace: "prod", Name: "echo", UID: "u-1", ResourceVersion: "42", Rule: `rule "quoted" ünï\n\u2028 \x00`},
		// forces the SDK's fallback decoder
		Object: map[string]any{
			"kind":     "ConfigMap",
			"metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web"}},
			"data":     map[string]any{"n": int64(2)},
		},
		OldObject: map[string]any{"data": map[string]any{"n": int64(1)}},
	}
	res, err := p.Handle(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 {
		t.Fatalf("records = %s", res.Records)
	}
	var got map[string]any
	if err := json.Unmarshal(res.Records[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"type": "UPDATED", "gvr": "v1/configmaps", "key": "prod/echo", "uid": "u-1", "rv": "42", "rule": ev.Rule,
		"initial": false, "kind": "ConfigMap", "label": "web", "old": map[string]any{"n": 1.0}, "calls": 1.0,
		"old_object": map[string]any{"data": map[string]any{"n": 1.0}},
		"object": map[string]any{
			"kind": "ConfigMap", "metadata": map[string]any{"labels": map[string]any{"app.kubernetes.io/name": "web"}},
			"data": map[string]any{"n": 2.0},
		},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("echo\n got %s\nwant %s", gb, wb)
	}
}

func TestDeclaredConfig(t *testing.T) {
	for _, tt := range []struct{ config, want string }{
		{``, `{"handler":true,"greeting":"hello"}`},
		{`{"greeting":"hi"}`, `{"handler":true,"greeting":"hi"}`},
	} {
		p := load(t, wasmhost.PluginSpec{Path: declaredWasm, Config: json.RawMessage(tt.config)})
		res, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "x"}})
		if err != nil || len(res.Records) != 1 || string(res.Records[0]) != tt.want {
			t.Errorf("config %s: records %s, err %v; want %s", tt.config, res.Records, err, tt.want)
		}
	}
}

func TestConfigAndLogs(t *testing.T) {
	p := load(t, wasmhost.PluginSpec{Name: "talker", Config: json.RawMessage(`{"greeting":"hi"}`)})
	res, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "config"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 || string(res.Records[0]) != `{"config":{"greeting":"hi"}}` {
		t.Fatalf("records = %s", res.Records)
	}
	for _, name := range []string{"log", "noisy", "trap"} {
		p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: name}})
	}
	got := logs.linesOf("talker")
	for _, want := range []string{
		"[INFO]  faro.talker: hello from the guest n=1",
		"[WARN]  faro.talker: plugin stderr: output=\"a line on stderr\"",
		"[INFO]  faro.talker: plugin stdout: output=\"a line on stdout\"",
		"more bytes dropped", // stderr is bounded
		"plugin log lines dropped over the per-event budget: lines=", // so are logs
		"panic: kaboom in a goroutine",                               // a Go guest's crash shows in stderr,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("logs lack %q:\n%.3000s", want, got)
		}
	}
}

func TestSandbox(t *testing.T) {
	p := load(t, wasmhost.PluginSpec{MaxCalls: 1}) // a fresh instance for every call
	var rands []string
	for range 2 {
		res, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "sandbox"}})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Env   []string
			Args  int
			FS    bool
			Now   int64
			Rand  string
			Calls int
		}
		if err := json.Unmarshal(res.Records[0], &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Env, []string{"GOGC=25"}) || got.Args != 0 || !got.FS {
			t.Errorf("guest sees env %q (want only GOGC=25), %d args, filesystem refused: %v", got.Env, got.Args, got.FS)
		}
		if d := time.Since(time.Unix(got.Now, 0)); d < -time.Minute || d > time.Minute {
			t.Errorf("guest clock is %v off", d)
		}
		if got.Calls != 1 {
			t.Errorf("instance served %d calls, want a fresh one", got.Calls)
		}
		rands = append(rands, got.Rand)
	}
	if rands[0] == rands[1] {
		t.Errorf("two fresh instances read the same random bytes %s: the source is not real", rands[0])
	}
}

func TestRecycle(t *testing.T) {
	t.Run("after max calls", func(t *testing.T) {
		p := load(t, wasmhost.PluginSpec{MaxCalls: 2})
		var calls []int
		for range 5 {
			res, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "echo"}})
			if err != nil {
				t.Fatal(err)
			}
			var rec struct{ Calls int }
			json.Unmarshal(res.Records[0], &rec)
			calls = append(calls, rec.Calls)
		}
		// Two instances may share the work; none serves more than 2 calls.
		for _, c := range calls {
			if c > 2 {
				t.Fatalf("calls per instance %v, want at most 2", calls)
			}
		}
		if s := p.Stats(); s.Recycled < 2 {
			t.Fatalf("stats %+v, want at least 2 recycled", s)
		}
	})
	t.Run("at the memory high-water mark", func(t *testing.T) {
		p := load(t, wasmhost.PluginSpec{MemoryLimit: 48 << 20})
		for i := range 20 { // 4 MiB kept per call: 80 MiB in all without recycling
			if _, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "grow"}}); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if s := p.Stats(); s.Recycled == 0 || len(s.Failures) != 0 {
			t.Fatalf("stats %+v, want recycling and no failures", s)
		}
	})
}

func TestHTTP(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("User-Agent")+" "+string(b))
		mu.Unlock()
		io.WriteString(w, "thanks")
	}))
	defer srv.Close()
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the disallowed server was reached") }))
	defer other.Close()
	u, _ := url.Parse(srv.URL)

	p := load(t, wasmhost.PluginSpec{Name: "poster", AllowedHosts: []string{u.Host}})
	tests := []struct {
		name, behaviour, url string
		kind                 wasmhost.Kind
		msg                  string
	}{
		{name: "allowed host", url: srv.URL + "/hook"},
		{name: "body too large", behaviour: "bighttp", url: srv.URL + "/big", kind: wasmhost.KindError, msg: "body too large"},
		{name: "same address, other port", url: other.URL + "/hook", kind: wasmhost.KindError, msg: "host not in the plugin's allowed_hosts"},
		{name: "other name for the host", url: strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), kind: wasmhost.KindError, msg: "allowed_hosts"},
		{name: "not http", url: "file:///etc/passwd", kind: wasmhost.KindError, msg: "rejected by the host as invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			behaviour := tt.behaviour
			if behaviour == "" {
				behaviour = "http"
			}
			res, err := p.Handle(context.Background(), &wasmhost.Event{
				Header: abi.Header{Name: behaviour, Namespace: "ns"},
				Object: map[string]any{"url": tt.url},
			})
			checkErr(t, err, tt.kind, tt.msg)
			if tt.kind == 0 && (len(res.Records) != 1 || string(res.Records[0]) != `{"body":"thanks","status":200}`) {
				t.Fatalf("records = %s", res.Records)
			}
		})
	}
	if want := `POST /hook application/json faro-plugin/poster {"hello":"ns"}`; len(got) != 1 || got[0] != want {
		t.Errorf("server saw %q, want [%q]", got, want)
	}
	if logged := logs.linesOf("poster"); !strings.Contains(logged, "host not in allowed_hosts: host="+strings.TrimPrefix(other.URL, "http://")) {
		t.Errorf("refusal not logged:\n%s", logged)
	}
}

func TestHTTPTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stop }))
	defer srv.Close()
	defer close(stop)
	u, _ := url.Parse(srv.URL)
	const timeout = 300 * time.Millisecond
	p := load(t, wasmhost.PluginSpec{AllowedHosts: []string{u.Hostname()}, Timeout: timeout})
	start := time.Now()
	_, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "http"}, Object: map[string]any{"url": srv.URL}})
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Errorf("took %v", took)
	}
	// The request ends at the deadline; whether the guest is stopped first
	// (timeout) or sees the failed request first (error) is a race.
	var e *wasmhost.Error
	if !errors.As(err, &e) || (e.Kind != wasmhost.KindTimeout && e.Kind != wasmhost.KindError) {
		t.Fatalf("err = %v, want a timeout or the failed request", err)
	}
}

func TestPoolIsBounded(t *testing.T) {
	p := load(t, wasmhost.PluginSpec{}) // the shared host's pool size is 2
	start := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "nap"}}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("6 naps of 50ms took %v: more than 2 ran at once", took)
	}
	if s := p.Stats(); s.Instances > 2 || s.Calls != 6 {
		t.Errorf("stats %+v, want at most 2 instances for 6 calls", s)
	}
}

// TestPoolSizeFollowsGOMAXPROCS: a plugin whose calls only compute gets
// no more instances than Go runs goroutines at once; one that may post to
// a host (and so waits) gets the host's whole pool size.
func TestPoolSizeFollowsGOMAXPROCS(t *testing.T) {
	tests := []struct {
		name      string
		hosts     []string
		instances uint64
	}{
		{"computes only", nil, 1},
		{"may post", []string{"127.0.0.1"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			procs := runtime.GOMAXPROCS(1)
			p := load(t, wasmhost.PluginSpec{AllowedHosts: tt.hosts}) // the shared host's pool size is 2
			runtime.GOMAXPROCS(procs)
			fillPool(t, p)
			if s := p.Stats(); s.Instances != tt.instances {
				t.Errorf("instances started for 2 concurrent calls: %d, want %d", s.Instances, tt.instances)
			}
		})
	}
}

func TestCancelAndClose(t *testing.T) {
	p := load(t, wasmhost.PluginSpec{Timeout: time.Minute})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Handle(ctx, &wasmhost.Event{Header: abi.Header{Name: "loop"}})
	checkErr(t, err, wasmhost.KindCanceled, "context deadline exceeded")

	// Close waits for the call in flight, then refuses new ones.
	done := make(chan error, 1)
	go func() {
		_, err := p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "nap"}})
		done <- err
	}()
	for p.Stats().Calls < 2 { // the nap is running (an instance had to start first)
		time.Sleep(time.Millisecond)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Had Close not waited, closing the instance under the call would have
	// failed it; the goroutine may still be on its way to the channel.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("call in flight: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call in flight did not end")
	}
	_, err = p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Name: "empty"}})
	if !errors.Is(err, wasmhost.ErrClosed) {
		t.Fatalf("Handle after Close: %v", err)
	}
	checkErr(t, err, wasmhost.KindCanceled, "plugin closed")
}

func TestCompilationCacheDir(t *testing.T) {
	dir := t.TempDir()
	h, err := wasmhost.New(wasmhost.Options{CacheDir: dir, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	if _, err := h.Load(context.Background(), wasmhost.PluginSpec{Name: "raw", Path: writeModule(t, abiModule(1).bytes())}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) == 0 {
		t.Fatal("nothing written to the compilation cache")
	}
}
