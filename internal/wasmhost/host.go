// Package wasmhost runs Faro's WebAssembly handler plugins: it is the last
// stage of the pipeline (informers -> filters/rules -> queue -> worker ->
// plugins), where a worker hands every event a resources entry matched to
// that entry's plugins, in order, and gets back the records they emit.
//
// One wazero runtime serves all plugins. Load compiles a module once (with
// an on-disk compilation cache), rejects it unless it speaks the ABI in
// plugins/sdk/ABI.md, and keeps a bounded pool of instances that
// Plugin.Handle borrows, one event at a time. Instances are sandboxed (no
// filesystem, environment or network; HTTP only through the host to allowed
// hosts), limited in memory and time, and replaced after they fail.
// RATIONALE.md explains the choices.
package wasmhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Options configures a Host.
type Options struct {
	// CacheDir holds wazero's compilation cache; "" means
	// DefaultCacheDir().
	CacheDir string
	// CacheMaxAge and CacheMaxBytes bound the cache: entries unused for
	// CacheMaxAge, or beyond CacheMaxBytes in all, are evicted, least
	// recently used first. 0 means DefaultCacheMaxAge, DefaultCacheMaxBytes.
	CacheMaxAge   time.Duration
	CacheMaxBytes int64
	// PoolSize is the most live instances per plugin, normally the engine's
	// worker count. A plugin without allowed_hosts gets at most GOMAXPROCS
	// of them: its calls only compute, so no more than that run at once.
	PoolSize int
	// Logger receives plugin logs and captured stdout/stderr, through
	// Logger.Named(plugin name). Nil discards them.
	Logger hclog.Logger
}

// Host owns the wazero runtime shared by all plugins. The runtime starts
// with the first module compiled (see runtime), so a daemon whose config
// has no plugin never starts one: starting it compiles WASI's and Faro's
// host functions, which touches a few MB of wazero's code.
type Host struct {
	cache wazero.CompilationCache
	// interruptible: modules get the interrupt checks (interrupt.go) that
	// let a timeout stop a running call.
	interruptible bool
	disk          *diskCache // nil when compiling in memory
	opts          Options
	client        *http.Client

	mu      sync.Mutex
	plugins []*Plugin // open plugins, closed by Close

	rtMu  sync.Mutex
	rt    wazero.Runtime // nil until started
	rtErr error          // why it could not start
}

// New returns a Host with its compilation cache; its runtime starts with the
// first module it compiles.
func New(opts Options) (*Host, error) {
	return newHost(opts, true)
}

// newHost is New with the choice of adding the interrupt checks that let a
// timeout stop a running call; only benchmarks turn them off, to measure
// what they cost.
func newHost(opts Options, interruptible bool) (*Host, error) {
	if opts.PoolSize < 1 {
		return nil, fmt.Errorf("wasmhost: pool size must be at least 1, got %d", opts.PoolSize)
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	cache, disk := compilationCache(opts)
	return &Host{cache: cache, interruptible: interruptible, disk: disk, opts: opts, client: newHTTPClient()}, nil
}

// runtime returns the runtime, starting it with WASI and Faro's host
// module on first use. A failure to start is kept and returned to every
// later caller.
func (h *Host) runtime(ctx context.Context) (wazero.Runtime, error) {
	h.rtMu.Lock()
	defer h.rtMu.Unlock()
	if h.rt != nil || h.rtErr != nil {
		return h.rt, h.rtErr
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(h.cache))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		h.rtErr = fmt.Errorf("wasmhost: wasi: %w", err)
		return nil, h.rtErr
	}
	if _, err := hostModule(rt).Instantiate(ctx); err != nil {
		rt.Close(ctx)
		h.rtErr = fmt.Errorf("wasmhost: host module: %w", err)
		return nil, h.rtErr
	}
	h.rt = rt
	return rt, nil
}

// DefaultCacheDir is where compiled plugins are cached unless
// Options.CacheDir says otherwise: os.UserCacheDir()/faro/wasm
// ($XDG_CACHE_HOME/faro/wasm, else ~/.cache/faro/wasm on Linux).
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "faro", "wasm"), nil
}

// compilationCache returns the on-disk compilation cache in opts.CacheDir
// (default DefaultCacheDir), after evicting what is over its bounds. Where
// there is none to be had (no home directory, a read-only file system, as
// in many containers) plugins still load, compiled once per process in
// memory, and a warning says why.
func compilationCache(opts Options) (wazero.CompilationCache, *diskCache) {
	dir := opts.CacheDir
	if dir == "" {
		var err error
		if dir, err = DefaultCacheDir(); err != nil {
			opts.Logger.Warn("no cache directory for compiled plugins; compiling in memory", "error", err)
			return wazero.NewCompilationCache(), nil
		}
	}
	cache, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		opts.Logger.Warn("cannot use the plugin compilation cache; compiling in memory", "dir", dir, "error", err)
		return wazero.NewCompilationCache(), nil
	}
	maxAge, maxBytes := cacheBounds(opts)
	disk := &diskCache{dir: dir, maxAge: maxAge, maxBytes: maxBytes, log: opts.Logger}
	disk.evict(time.Now())
	return cache, disk
}

// Compile compiles the module at path into the compilation cache, without
// loading it, so that later loads (of any Host using the same cache dir)
// skip compiling: `faro plugin compile` uses it to bake compiled plugins
// into an image.
func (h *Host) Compile(ctx context.Context, path string) error {
	bin, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	rt, err := h.runtime(ctx)
	if err != nil {
		return err
	}
	compiled, err := h.compile(ctx, rt, bin)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := checkExports(compiled); err != nil {
		compiled.Close(ctx)
		return fmt.Errorf("%s: %w", path, err)
	}
	return compiled.Close(ctx)
}

// compile adds the interrupt checks to the module bin and compiles it for
// rt (the Host's), through the compilation cache.
func (h *Host) compile(ctx context.Context, rt wazero.Runtime, bin []byte) (wazero.CompiledModule, error) {
	sum := sha256.Sum256(bin)
	if h.interruptible {
		var err error
		if bin, err = instrument(bin); err != nil {
			return nil, fmt.Errorf("invalid module: %w", err)
		}
	}
	compiled, err := h.disk.compile(ctx, rt, bin, sum)
	if err != nil {
		return nil, fmt.Errorf("invalid module: %w", err)
	}
	return compiled, nil
}

// CacheDir is the folder of the on-disk compilation cache, "" when the
// Host compiles in memory.
func (h *Host) CacheDir() string {
	if h.disk == nil {
		return ""
	}
	return h.disk.dir
}

// Close closes every plugin (waiting for calls in flight until ctx ends),
// then the runtime and the compilation cache.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	plugins := h.plugins
	h.plugins = nil
	h.mu.Unlock()
	var errs []error
	for _, p := range plugins {
		errs = append(errs, p.Close(ctx))
	}
	h.client.CloseIdleConnections()
	h.rtMu.Lock()
	if h.rt != nil {
		errs = append(errs, h.rt.Close(ctx))
	}
	h.rtMu.Unlock()
	errs = append(errs, h.cache.Close(ctx))
	return errors.Join(errs...)
}

func (h *Host) forget(p *Plugin) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plugins = slices.DeleteFunc(h.plugins, func(q *Plugin) bool { return q == p })
}

// newHTTPClient is the client behind http_post. It never follows redirects,
// which could lead to a host outside allowed_hosts.
func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	return &http.Client{
		Transport:     t,
		Timeout:       maxHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// maxHTTPTimeout bounds one http_post even for plugins with a long timeout.
const maxHTTPTimeout = 10 * time.Second
