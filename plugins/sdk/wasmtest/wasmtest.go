// Package wasmtest builds a Go plugin to .wasm and runs it through the real
// host (internal/wasmhost), for integration tests of plugins; unit tests of
// a plugin's logic belong in the native harness, plugins/sdk/sdktest.
//
// Build once per test binary, in TestMain, and load per test:
//
//	var wasmPath string // "" with -short
//
//	func TestMain(m *testing.M) { wasmtest.Main(m, &wasmPath) }
//
//	func TestWasm(t *testing.T) {
//		if wasmPath == "" {
//			t.Skip("-short")
//		}
//		p := wasmtest.Load(t, wasmhost.PluginSpec{Name: "changelog", Path: wasmPath})
//		res, err := p.Handle(ctx, wasmtest.Event(ev)) // ev is an sdktest.Event
//	}
//
// Because wasmhost is internal to Faro's module, this package only serves
// plugins inside it.
package wasmtest

import (
	"context"
	"flag"
	"fmt"
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
	os.Exit(run(m, wasmPath))
}

func run(m *testing.M, wasmPath *string) int {
	if !testing.Short() {
		dir, err := os.MkdirTemp("", "wasmtest")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		*wasmPath = filepath.Join(dir, "plugin.wasm")
		if err := Build(context.Background(), ".", *wasmPath); err != nil {
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

// Load starts a host with a pool of two instances, logging to the test log,
// and loads spec into it; both are closed when the test ends. A zero
// spec.Timeout becomes 10s rather than Faro's 1s, so that slow -race runs do
// not fail tests that are not about timeouts.
func Load(tb testing.TB, spec wasmhost.PluginSpec) *wasmhost.Plugin {
	tb.Helper()
	if spec.Timeout == 0 {
		spec.Timeout = 10 * time.Second
	}
	ctx := context.Background()
	h, err := wasmhost.New(ctx, wasmhost.Options{
		CacheDir: CacheDir(),
		PoolSize: 2,
		Logger:   hclog.New(&hclog.LoggerOptions{Name: "wasmhost", Output: testWriter{tb}, Level: hclog.Debug}),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	p, err := h.Load(ctx, spec)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// Event converts a harness event into the host's.
func Event(ev sdktest.Event) *wasmhost.Event {
	e := wasmhost.Event(ev)
	return &e
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p))
	return len(p), nil
}
