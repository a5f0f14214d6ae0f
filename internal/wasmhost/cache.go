package wasmhost

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
)

// Bounds of the on-disk compilation cache, the defaults of Options.
const (
	DefaultCacheMaxAge   = 7 * 24 * time.Hour
	DefaultCacheMaxBytes = 512 << 20
)

// markerDir is the folder of the cache dir where each module compiled
// through a Host leaves a marker, named after the SHA-256 of the .wasm
// file, holding the path (relative to the cache dir) of wazero's entry for
// it: wazero names its entries by a hash of its own, so the marker is how a
// later load finds the entry it uses, to touch it.
const markerDir = "faro-modules"

// diskCache keeps wazero's file cache in dir bounded: entries (one file per
// compiled module) not used for maxAge, or beyond maxBytes in all, are
// removed, least recently used first. Use is the file's modification time,
// which every compile through the Host refreshes.
type diskCache struct {
	dir      string
	maxAge   time.Duration
	maxBytes int64
	log      hclog.Logger
	mu       sync.Mutex // one compile at a time, to tell which entry it wrote
}

type cacheEntry struct {
	path string
	size int64
	used time.Time
}

// compile compiles bin, the instrumented form of the .wasm file whose
// SHA-256 is sum, through rt, whose compilation cache is c's dir, then
// touches (or records) the cache entry of the module and evicts what is
// over the bounds. Cache bookkeeping never fails the compile: problems are
// logged.
func (c *diskCache) compile(ctx context.Context, rt wazero.Runtime, bin []byte, sum [sha256.Size]byte) (wazero.CompiledModule, error) {
	if c == nil {
		return rt.CompileModule(ctx, bin)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.entries()
	compiled, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return nil, err
	}
	marker := filepath.Join(c.dir, markerDir, hex.EncodeToString(sum[:]))
	now := time.Now()
	known := map[string]bool{}
	for _, e := range before {
		known[e.path] = true
	}
	var added bool
	for _, e := range c.entries() {
		if !known[e.path] {
			added = true
			rel, _ := filepath.Rel(c.dir, e.path)
			err := os.MkdirAll(filepath.Dir(marker), 0o755)
			if err == nil {
				err = os.WriteFile(marker, []byte(rel), 0o644)
			}
			if err != nil {
				c.log.Warn("cannot record a compiled plugin in the cache", "dir", c.dir, "error", err)
			}
		}
	}
	if !added {
		if rel, err := os.ReadFile(marker); err == nil {
			_ = os.Chtimes(filepath.Join(c.dir, string(rel)), now, now)
		}
	}
	if added {
		c.evict(now)
	}
	return compiled, nil
}

// entries lists wazero's cache files under dir (markers excluded).
func (c *diskCache) entries() []cacheEntry {
	var out []cacheEntry
	_ = filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return nil
		case d.IsDir() && d.Name() == markerDir:
			return filepath.SkipDir
		case d.IsDir():
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			out = append(out, cacheEntry{path: path, size: info.Size(), used: info.ModTime()})
		}
		return nil
	})
	return out
}

// evict removes the entries unused for maxAge, then the least recently
// used until the rest fit in maxBytes, and the markers of removed entries.
func (c *diskCache) evict(now time.Time) {
	entries := c.entries()
	slices.SortFunc(entries, func(a, b cacheEntry) int { return a.used.Compare(b.used) })
	var total int64
	for _, e := range entries {
		total += e.size
	}
	var errs []error
	removed := 0
	for _, e := range entries {
		if now.Sub(e.used) <= c.maxAge && total <= c.maxBytes {
			break
		}
		if err := os.Remove(e.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		total -= e.size
		removed++
	}
	if removed > 0 {
		c.log.Debug("evicted compiled plugins from the cache", "dir", c.dir, "entries", removed, "bytes_kept", total)
		c.dropStaleMarkers()
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Warn("cannot evict compiled plugins from the cache", "dir", c.dir, "error", err)
	}
}

// dropStaleMarkers removes markers whose entry is gone.
func (c *diskCache) dropStaleMarkers() {
	dir := filepath.Join(c.dir, markerDir)
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		rel, err := os.ReadFile(filepath.Join(dir, n.Name()))
		if err != nil || strings.Contains(string(rel), "..") {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.dir, string(rel))); errors.Is(err, fs.ErrNotExist) {
			_ = os.Remove(filepath.Join(dir, n.Name()))
		}
	}
}

// cacheBounds returns opts' cache bounds with their defaults filled in.
func cacheBounds(opts Options) (time.Duration, int64) {
	return cmp.Or(opts.CacheMaxAge, DefaultCacheMaxAge), cmp.Or(opts.CacheMaxBytes, DefaultCacheMaxBytes)
}
