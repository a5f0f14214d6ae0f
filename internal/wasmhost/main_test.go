package wasmhost_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// The test guest (testdata/guest) is built once per test binary and
// loaded into one shared host; modules compile once per machine thanks to
// the compilation cache in wasmtest.CacheDir.
var (
	tmpDir       string
	guestWasm    string
	declaredWasm string // testdata/declared
	host         *wasmhost.Host
	logs         syncBuffer
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	if tmpDir, err = os.MkdirTemp("", "wasmhost-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmpDir)
	guestWasm = filepath.Join(tmpDir, "guest.wasm")
	declaredWasm = filepath.Join(tmpDir, "declared.wasm")
	for dir, out := range map[string]string{"testdata/guest": guestWasm, "testdata/declared": declaredWasm} {
		if err := wasmtest.Build(ctx, dir, out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	host, err = wasmhost.New(wasmhost.Options{
		CacheDir: wasmtest.CacheDir(),
		PoolSize: 2,
		Logger:   hclog.New(&hclog.LoggerOptions{Name: "faro", Output: &logs, Level: hclog.Trace}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer host.Close(ctx)
	return m.Run()
}

// load loads spec into the shared host, the test guest unless spec.Path
// says otherwise, named after the test unless spec.Name does. The timeout
// defaults to 10s: tests of timeouts set theirs, the others must not fail
// because -race on a busy machine is slow.
func load(t testing.TB, spec wasmhost.PluginSpec) *wasmhost.Plugin {
	t.Helper()
	if spec.Path == "" {
		spec.Path = guestWasm
	}
	if spec.Timeout == 0 {
		spec.Timeout = 10 * time.Second
	}
	if spec.Name == "" {
		spec.Name = strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	}
	p, err := host.Load(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// writeModule writes a hand-made module and returns its path.
func writeModule(t testing.TB, m []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.wasm")
	if err := os.WriteFile(path, m, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer collects the shared host's log output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// linesOf returns the log lines of the named plugin's logger.
func (b *syncBuffer) linesOf(plugin string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	inPlugin := false
	for _, l := range strings.Split(b.buf.String(), "\n") {
		// hclog continues multi-line values on lines starting with spaces or "|".
		if strings.HasPrefix(l, " ") || strings.HasPrefix(l, "|") {
			if inPlugin {
				out = append(out, l)
			}
			continue
		}
		inPlugin = strings.Contains(l, "faro."+plugin+":")
		if inPlugin {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
