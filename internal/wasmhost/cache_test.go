package wasmhost_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/wasmhost"
)

// TestCompilationCacheBounds: entries unused for the maximum age, or over
// the size bound (least recently used first), are evicted; using an entry
// (Load or Compile) refreshes it.
func TestCompilationCacheBounds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	modules := map[string][]byte{"a": abiModule(1).bytes(), "b": abiModule(1, i32Const(1)...).bytes()}
	paths := map[string]string{}
	for name, m := range modules {
		paths[name] = writeModule(t, m)
	}
	// entry is wazero's cache file for a module, found through its marker.
	entry := func(name string) string {
		t.Helper()
		sum := sha256.Sum256(modules[name])
		rel, err := os.ReadFile(filepath.Join(dir, "faro-modules", hex.EncodeToString(sum[:])))
		if err != nil {
			t.Fatalf("no marker for %s: %v", name, err)
		}
		return filepath.Join(dir, string(rel))
	}
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	age := func(path string, d time.Duration) {
		t.Helper()
		when := time.Now().Add(-d)
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
	}
	newHost := func(maxBytes int64) *wasmhost.Host {
		t.Helper()
		h, err := wasmhost.New(wasmhost.Options{CacheDir: dir, PoolSize: 1, CacheMaxBytes: maxBytes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close(ctx) })
		return h
	}

	h := newHost(0)
	for _, name := range []string{"a", "b"} {
		if err := h.Compile(ctx, paths[name]); err != nil {
			t.Fatal(err)
		}
	}
	a, b := entry("a"), entry("b")
	if a == b || !exists(a) || !exists(b) {
		t.Fatalf("entries %s and %s", a, b)
	}

	// Unused for over 7 days: gone when the next host starts.
	age(a, 8*24*time.Hour)
	age(b, 3*24*time.Hour)
	h = newHost(0)
	if exists(a) || !exists(b) {
		t.Fatalf("after start: a exists %v (want false), b exists %v (want true)", exists(a), exists(b))
	}

	// Loading b touches its entry.
	p, err := h.Load(ctx, wasmhost.PluginSpec{Name: "b", Path: paths["b"]})
	if err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)
	if info, _ := os.Stat(b); time.Since(info.ModTime()) > time.Hour {
		t.Fatalf("b's entry not touched on use: modified %v", info.ModTime())
	}

	// Over the size bound the least recently used goes: with room for one
	// entry, compiling a again evicts b.
	info, _ := os.Stat(b)
	age(b, time.Minute)
	h = newHost(info.Size() + 1)
	if err := h.Compile(ctx, paths["a"]); err != nil {
		t.Fatal(err)
	}
	if a = entry("a"); !exists(a) || exists(b) {
		t.Fatalf("over the size bound: a exists %v (want true), b exists %v (want false)", exists(a), exists(b))
	}
}

func TestCompileRejectsNonPlugins(t *testing.T) {
	h, err := wasmhost.New(wasmhost.Options{CacheDir: t.TempDir(), PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	m := abiModule(1)
	m.funcs[2].export = ""
	for path, want := range map[string]string{
		writeModule(t, []byte("not wasm")): "invalid module",
		writeModule(t, m.bytes()):          `does not export "faro_handle"`,
	} {
		if err := h.Compile(context.Background(), path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%s) = %v, want %q", path, err, want)
		}
	}
}
