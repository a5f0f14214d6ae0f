// Package wasmtest builds a Go plugin to .wasm and runs it through the real
// host (internal/wasmhost), with its sandbox and limits, for integration
// tests of plugins; unit tests of a plugin's logic belong in the native
// harness, plugins/sdk/sdktest. Harness mirrors sdktest.Harness and takes
// and returns the same Event and Result types, so one table of cases can
// run through both. It works for a plugin in any module.
//
// Build once per test binary, in TestMain, and run events per test:
//
//	var wasmPath string // "" with -short
//
//	func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }
//
//	func TestWasm(t *testing.T) {
//		if wasmPath == "" {
//			t.Skip("-short")
//		}
//		res := wasmtest.Harness{Path: wasmPath, Config: cfg}.Run(t, ev) // ev is an sdktest.Event
//	}
package wasmtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
)

// Build compiles the Go plugin package in dir to the wasm reactor out:
//
//	GOOS=wasip1 GOARCH=wasm go build -trimpath -buildmode=c-shared -o out dir
func Build(ctx context.Context, dir, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildmode=c-shared", "-o", abs, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wasmtest: building %s: %w\n%s", dir, err, b)
	}
	return nil
}

// Main is a TestMain for a plugin package: unless -short, it builds the
// package in the current directory into a temporary file, stores its path in
// *wasmPath, runs the tests, removes the file and exits.
func Main(m *testing.M, wasmPath *string) {
	flag.Parse()
	builds := map[string]*string{}
	if !testing.Short() {
		builds["."] = wasmPath
	}
	os.Exit(run(m, builds))
}

// MainBuilding is a TestMain for tests that need built plugins, -short or
// not: it builds each Go plugin package dir of builds (relative to the
// test's directory) into a temporary file, stores its path in builds[dir],
// runs the tests, removes the files and exits.
func MainBuilding(m *testing.M, builds map[string]*string) {
	flag.Parse()
	os.Exit(run(m, builds))
}

func run(m *testing.M, builds map[string]*string) int {
	dir, err := os.MkdirTemp("", "wasmtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	n := 0
	for src, path := range builds {
		n++
		*path = filepath.Join(dir, fmt.Sprintf("plugin%d.wasm", n))
		if err := Build(context.Background(), src, *path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// CacheDir is the compilation cache Load uses: shared by the tests of one
// user, so a module is compiled once and later runs load it from disk.
func CacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "faro", "wasm-test")
}

// Harness runs a built plugin through the real host.
type Harness struct {
	// Path is the .wasm file, e.g. the one Main builds.
	Path string
	// Config is marshalled to JSON and served to sdk.Config; nil means no
	// configuration.
	Config any
	// AllowedHosts are the hosts sdk.HTTPPost may reach, as in Faro's
	// config; posts really go out (to a test server on loopback, say).
	AllowedHosts []string
	// Timeout bounds one event; 0 means sdktest.DefaultTimeout rather than
	// Faro's 1s, so that slow -race runs do not fail tests that are not
	// about timeouts.
	Timeout time.Duration
	// MemoryLimit is the plugin's memory_limit in bytes; 0 means Faro's
	// default.
	MemoryLimit uint64
}

// Run loads the plugin into a fresh host, as Faro would, runs ev through
// it and closes both. A configuration the plugin refuses at load gives a
// Result of kind "config", as in sdktest; any other load failure fails the
// test. Result.Requests stays empty: posts go through the host's real HTTP
// client. The plugin's logs go to Result.Logs and to the test log.
func (h Harness) Run(tb testing.TB, ev sdktest.Event) sdktest.Result {
	tb.Helper()
	timeout := h.Timeout
	if timeout == 0 {
		timeout = sdktest.DefaultTimeout
	}
	var conf []byte
	if h.Config != nil {
		var err error
		if conf, err = json.Marshal(h.Config); err != nil {
			tb.Fatalf("wasmtest: config: %v", err)
		}
	}
	var logs bytes.Buffer
	ctx := context.Background()
	host, err := wasmhost.New(wasmhost.Options{
		CacheDir: CacheDir(),
		PoolSize: 1,
		Logger:   hclog.New(&hclog.LoggerOptions{Name: "wasmtest", Output: &logs, Level: hclog.Trace, JSONFormat: true}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := host.Close(ctx); err != nil {
			tb.Error(err)
		}
	}()
	p, err := host.Load(ctx, wasmhost.PluginSpec{
		Name: "plugin", Path: h.Path, Config: conf, Timeout: timeout,
		MemoryLimit: h.MemoryLimit, AllowedHosts: h.AllowedHosts,
	})
	if errors.As(err, new(*wasmhost.ConfigError)) {
		return sdktest.Result{Kind: "config", Err: err, Logs: logLines(tb, &logs)}
	}
	if err != nil {
		tb.Fatal(err)
	}
	out, err := p.Handle(ctx, &ev)
	res := sdktest.Result{Records: out.Records, Err: err}
	var perr *wasmhost.Error
	if errors.As(err, &perr) {
		res.Kind = perr.Kind.String()
	}
	res.Logs = logLines(tb, &logs)
	return res
}

// logLevels maps hclog's level names to log/slog levels.
var logLevels = map[string]slog.Level{"trace": slog.LevelDebug - 4, "debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// logLines turns the host's JSON log lines into the harness's, writing each
// to the test log too. A captured stdout or stderr line keeps its output.
func logLines(tb testing.TB, buf *bytes.Buffer) []sdktest.Log {
	var out []sdktest.Log
	sc := bufio.NewScanner(buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		tb.Log(sc.Text())
		var l struct {
			Level  string `json:"@level"`
			Msg    string `json:"@message"`
			Output string `json:"output"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l.Output != "" {
			l.Msg += ": " + l.Output
		}
		out = append(out, sdktest.Log{Level: logLevels[l.Level], Msg: l.Msg})
	}
	return out
}

// Compare runs ev through the built plugin (Run) and through the native
// harness with the same Config and Timeout, and fails the test unless both
// emit the same records and fail with the same kind. It returns the wasm
// result, for further checks.
func (h Harness) Compare(tb testing.TB, ev sdktest.Event) sdktest.Result {
	tb.Helper()
	native := sdktest.Harness{Config: h.Config, Timeout: h.Timeout}.Run(ev)
	res := h.Run(tb, ev)
	same := res.Kind == native.Kind && len(res.Records) == len(native.Records)
	for i := 0; same && i < len(res.Records); i++ {
		same = bytes.Equal(res.Records[i], native.Records[i])
	}
	if !same {
		tb.Errorf("wasm and native differ for %s %s/%s:\nwasm:   kind %q, err %v, records %s\nnative: kind %q, err %v, records %s",
			ev.Type, ev.Namespace, ev.Name, res.Kind, res.Err, res.Records, native.Kind, native.Err, native.Records)
	}
	return res
}
