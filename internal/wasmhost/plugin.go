package wasmhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// PluginSpec describes one plugin to load.
type PluginSpec struct {
	Name string
	Path string // absolute path of the .wasm file
	// Config is the plugin's configuration as JSON, served to the guest
	// (sdk.Config); empty means none.
	Config json.RawMessage
	// Timeout bounds one event; 0 means DefaultTimeout.
	Timeout time.Duration
	// MemoryLimit bounds one instance's linear memory in bytes; 0 means
	// DefaultMemoryLimit.
	MemoryLimit uint64
	// AllowedHosts are the "host" or "host:port" the plugin may POST to
	// through the host; a bare host allows any port. None by default.
	AllowedHosts []string
	// MaxCalls recycles an instance after that many events; 0 means
	// DefaultMaxCalls.
	MaxCalls int
}

// Defaults for PluginSpec's zero values.
const (
	DefaultTimeout     = time.Second
	DefaultMemoryLimit = 64 << 20
	DefaultMaxCalls    = 10000
)

// Plugin is a loaded plugin: its compiled module and pool of instances.
// Its methods are safe for concurrent use.
type Plugin struct {
	host     *Host
	rt       wazero.Runtime // the host's, which compiled the module
	spec     PluginSpec
	log      hclog.Logger
	compiled wazero.CompiledModule
	// highWater is the memory size past which an instance is recycled after
	// its call: halfway from a fresh instance's size to the limit.
	highWater uint64

	// pool holds poolSize tokens: an idle instance, or nil for a slot with
	// no live instance. Taking a token is the right to run one call, so at
	// most that many instances ever exist and none is ever dropped unclosed.
	pool      chan *instance
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error

	calls, instances, recycled atomic.Uint64
	failures                   [len(kindNames)]atomic.Uint64
}

// Load compiles the module at spec.Path (or takes it from the compilation
// cache), checks it against the ABI and starts one instance to validate it.
// Every problem is an error naming the plugin and the file.
func (h *Host) Load(ctx context.Context, spec PluginSpec) (*Plugin, error) {
	p, err := h.load(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("plugin %q (%s): %w", spec.Name, spec.Path, err)
	}
	h.mu.Lock()
	h.plugins = append(h.plugins, p)
	h.mu.Unlock()
	return p, nil
}

func (h *Host) load(ctx context.Context, spec PluginSpec) (*Plugin, error) {
	if err := normalize(&spec); err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(spec.Path)
	if err != nil {
		return nil, err
	}
	rt, err := h.runtime(ctx)
	if err != nil {
		return nil, err
	}
	compiled, err := h.compile(ctx, rt, bin)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		host:     h,
		rt:       rt,
		spec:     spec,
		log:      h.opts.Logger.Named(spec.Name),
		compiled: compiled,
		pool:     make(chan *instance, poolSize(h.opts.PoolSize, spec)),
		done:     make(chan struct{}),
	}
	inst, err := p.validate(ctx)
	if err != nil {
		compiled.Close(ctx)
		return nil, err
	}
	fresh := inst.memory.Size()
	p.highWater = uint64(fresh) + (spec.MemoryLimit-uint64(fresh))/2
	p.pool <- inst
	for range cap(p.pool) - 1 {
		p.pool <- nil
	}
	return p, nil
}

// poolSize returns how many instances a plugin may have, out of the host's
// PoolSize. A plugin that may post to a host (allowed_hosts) spends calls
// waiting, so it gets them all; any other call only computes, and Go runs at
// most GOMAXPROCS of them at a time, so more instances than that would hold
// memory (about 10 MB each for a Go guest) without running any sooner.
func poolSize(size int, spec PluginSpec) int {
	if len(spec.AllowedHosts) > 0 {
		return size
	}
	return min(size, runtime.GOMAXPROCS(0))
}

// Quantity writes a byte count as a config file would: "32Mi".
func Quantity(n uint64) string {
	if n > math.MaxInt64 {
		return strconv.FormatUint(n, 10)
	}
	return resource.NewQuantity(int64(n), resource.BinarySI).String()
}

func normalize(spec *PluginSpec) error {
	if spec.Name == "" {
		return errors.New("plugin has no name")
	}
	if spec.Timeout < 0 || spec.MaxCalls < 0 {
		return errors.New("timeout and max calls must not be negative")
	}
	if spec.Timeout == 0 {
		spec.Timeout = DefaultTimeout
	}
	if spec.MaxCalls == 0 {
		spec.MaxCalls = DefaultMaxCalls
	}
	if spec.MemoryLimit == 0 {
		spec.MemoryLimit = DefaultMemoryLimit
	}
	if spec.MemoryLimit < 1<<16 || spec.MemoryLimit > math.MaxUint32+1 {
		return fmt.Errorf("memory limit %s outside 64Ki..4Gi", Quantity(spec.MemoryLimit))
	}
	if len(spec.Config) == 0 || string(spec.Config) == "null" {
		spec.Config = nil
	} else if !json.Valid(spec.Config) {
		return errors.New("config is not valid JSON")
	}
	spec.Config, spec.AllowedHosts = slices.Clone(spec.Config), slices.Clone(spec.AllowedHosts)
	for _, a := range spec.AllowedHosts {
		if a == "" || strings.ContainsAny(a, "/@?# ") {
			return fmt.Errorf("allowed host %q is not host or host:port", a)
		}
		if host, _, err := net.SplitHostPort(a); err == nil && host == "" {
			return fmt.Errorf("allowed host %q has no host", a)
		}
	}
	return nil
}

// validate checks the module's imports and exports, starts the first
// instance and asks it for its ABI version.
func (p *Plugin) validate(ctx context.Context) (*instance, error) {
	if err := checkExports(p.compiled); err != nil {
		return nil, err
	}
	if err := checkImports(p.compiled); err != nil {
		return nil, err
	}
	if mem := p.compiled.ExportedMemories()[abi.ExportMemory]; uint64(mem.Min())<<16 > p.spec.MemoryLimit {
		return nil, fmt.Errorf("module needs %s of memory to start, over its memory_limit of %s", Quantity(uint64(mem.Min())<<16), Quantity(p.spec.MemoryLimit))
	}
	inst, e := p.newInstance(ctx)
	if e != nil {
		return nil, fmt.Errorf("start: %w", e)
	}
	stopped, err := inst.invoke(ctx, p.spec.Timeout, inst.mod.ExportedFunction(abi.ExportVersion))
	switch {
	case err != nil || stopped:
		e := inst.classify(stopped, ctx, p.spec.Timeout, err)
		err = fmt.Errorf("%s: %s: %w", abi.ExportVersion, e.Kind, e.Err)
	case int32(inst.stack[0]) != abi.Version:
		err = fmt.Errorf("module speaks ABI version %d, this host speaks %d", int32(inst.stack[0]), abi.Version)
	default:
		err = inst.check(ctx)
	}
	if err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

// ConfigError is the load error of a plugin whose configuration does not
// fit what the plugin declared (sdk.Config in init).
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// check calls the guest's optional faro_check, which refuses a module that
// registers no handler or whose configuration does not fit.
func (inst *instance) check(ctx context.Context) error {
	fn := inst.mod.ExportedFunction(abi.ExportCheck)
	if fn == nil {
		return nil
	}
	cs := &inst.cs
	cs.errMsg = ""
	stopped, err := inst.invoke(ctx, inst.p.spec.Timeout, fn)
	inst.flush()
	switch status := int32(inst.stack[0]); {
	case err != nil || stopped:
		e := inst.classify(stopped, ctx, inst.p.spec.Timeout, err)
		return fmt.Errorf("%s: %s: %w", abi.ExportCheck, e.Kind, e.Err)
	case status == abi.StatusOK:
		return nil
	case status == abi.StatusConfig:
		return &ConfigError{Msg: cs.errMsg}
	case cs.errMsg == "":
		return fmt.Errorf("%s returned status %d", abi.ExportCheck, status)
	default:
		return errors.New(cs.errMsg)
	}
}

// exportHint says what a module that lacks an ABI export probably is.
func exportHint(m wazero.CompiledModule) string {
	fns := m.ExportedFunctions()
	if _, ok := fns["_start"]; ok {
		return "it is a WASI command; a plugin is a reactor: build with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared"
	}
	if _, ok := fns[abi.ExportInitialize]; ok {
		return "it is a WASI reactor (c-shared) without Faro's SDK: import github.com/faro-dev/faro/plugins/sdk and call sdk.Handle in init"
	}
	return "a plugin is a WASI reactor built with Faro's SDK: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared"
}

func checkExports(m wazero.CompiledModule) error {
	if _, ok := m.ExportedMemories()[abi.ExportMemory]; !ok {
		return fmt.Errorf("module does not export %q (%s)", abi.ExportMemory, exportHint(m))
	}
	fns := m.ExportedFunctions()
	for _, want := range []struct {
		name            string
		params, results []api.ValueType
	}{
		{abi.ExportInitialize, nil, nil},
		{abi.ExportVersion, nil, []api.ValueType{api.ValueTypeI32}},
		{abi.ExportHandle, []api.ValueType{api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}},
	} {
		fn, ok := fns[want.name]
		if !ok {
			return fmt.Errorf("module does not export %q (%s)", want.name, exportHint(m))
		}
		if !sameTypes(fn.ParamTypes(), want.params) || !sameTypes(fn.ResultTypes(), want.results) {
			return fmt.Errorf("export %q has signature %s, the ABI wants %s",
				want.name, signature(fn.ParamTypes(), fn.ResultTypes()), signature(want.params, want.results))
		}
	}
	return nil
}

// checkImports accepts WASI (whatever wazero provides; instantiation names
// anything missing) and the faro functions of this ABI version with their
// exact signatures.
func checkImports(m wazero.CompiledModule) error {
	if len(m.ImportedMemories()) > 0 {
		return errors.New("module imports a memory; it must export its own")
	}
	for _, fn := range m.ImportedFunctions() {
		module, name, _ := fn.Import()
		switch module {
		case wasiModule:
		case abi.HostModule:
			want, ok := hostFuncs[name]
			if !ok {
				return fmt.Errorf("module imports %s.%s, which ABI version %d does not have", module, name, abi.Version)
			}
			if !sameTypes(fn.ParamTypes(), want.params) || !sameTypes(fn.ResultTypes(), want.results) {
				return fmt.Errorf("import %s.%s has signature %s, the ABI wants %s", module, name,
					signature(fn.ParamTypes(), fn.ResultTypes()), signature(want.params, want.results))
			}
		default:
			return fmt.Errorf("module imports %s.%s; only %s and %s are available", module, name, abi.HostModule, wasiModule)
		}
	}
	return nil
}

const wasiModule = "wasi_snapshot_preview1"

func sameTypes(a, b []api.ValueType) bool { return string(a) == string(b) }

func signature(params, results []api.ValueType) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(params) + " -> " + names(results)
}

// Event is one matched event, as the engine hands it to plugins. Handle
// only reads it, and it must not change while a Handle is running.
type Event = abi.Event

// Result is what a plugin produced for one event.
type Result struct {
	Records []json.RawMessage // emitted records, each a JSON object, in order
}

// Handle runs ev through the plugin on an idle instance, waiting for one if
// all PoolSize are busy. A failure is an *Error; by default only KindError is worth
// retrying. Whatever the plugin does, the call returns within the plugin's
// timeout of starting, plus, when the slot it got has no live instance, the
// time to start one (about 10 ms for a Go plugin, at most 10 s).
func (p *Plugin) Handle(ctx context.Context, ev *Event) (Result, error) {
	var inst *instance
	select {
	case inst = <-p.pool:
	case <-ctx.Done():
		return Result{}, p.fail(KindCanceled, ctx.Err())
	case <-p.done:
		return Result{}, p.fail(KindCanceled, ErrClosed)
	}
	res, inst, err := p.run(ctx, inst, ev)
	p.pool <- inst
	return res, err
}

// run makes one call on inst (nil: start a new instance first) and returns
// the instance to put back in the pool: nil when it was closed.
func (p *Plugin) run(ctx context.Context, inst *instance, ev *Event) (Result, *instance, error) {
	select {
	case <-p.done:
		return Result{}, inst, p.fail(KindCanceled, ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		// Calling would close the instance for nothing.
		return Result{}, inst, p.fail(KindCanceled, err)
	}
	if inst == nil {
		var e *Error
		if inst, e = p.newInstance(ctx); e != nil {
			return Result{}, nil, p.fail(e.Kind, fmt.Errorf("start instance: %w", e.Err))
		}
	}
	p.calls.Add(1)
	start := time.Now()
	res, err := inst.call(ctx, ev)
	metrics.ObservePluginCall(p.spec.Name, metricResult(err), time.Since(start))
	if err != nil {
		p.failures[err.Kind].Add(1)
	}
	inst.calls++
	switch {
	case err != nil && err.Kind != KindError && err.Kind != KindPanic && err.Kind != KindOutput, inst.stale:
		inst.close() // failed, or may be closed by wazero any moment
	case inst.calls >= p.spec.MaxCalls || uint64(inst.memory.Size()) > p.highWater:
		p.recycled.Add(1)
		inst.close()
	default:
		return res, inst, asError(err)
	}
	return res, nil, asError(err)
}

// asError keeps a nil *Error from becoming a non-nil error.
func asError(e *Error) error {
	if e == nil {
		return nil
	}
	return e
}

func (p *Plugin) fail(kind Kind, err error) *Error {
	p.failures[kind].Add(1)
	return &Error{Plugin: p.spec.Name, Kind: kind, Err: err}
}

// Close stops taking events, waits (until ctx ends) for calls in flight and
// closes every instance and the compiled module. Later Handle calls fail
// with ErrClosed.
func (p *Plugin) Close(ctx context.Context) error {
	p.closeOnce.Do(func() {
		close(p.done)
		p.host.forget(p)
		for range cap(p.pool) {
			select {
			case inst := <-p.pool:
				if inst != nil {
					inst.close()
				}
			case <-ctx.Done():
				p.closeErr = fmt.Errorf("plugin %s: close: %w", p.spec.Name, ctx.Err())
				return // the runtime's Close still releases the stragglers
			}
		}
		p.closeErr = p.compiled.Close(ctx)
	})
	return p.closeErr
}

// Stats are a plugin's counters since Load.
type Stats struct {
	Calls     uint64          // calls that reached an instance
	Failures  map[Kind]uint64 // failed Handle calls by kind
	Instances uint64          // instances started, including the one Load validates
	Recycled  uint64          // healthy instances closed after MaxCalls or the memory high-water mark
}

// Stats returns the current counters.
func (p *Plugin) Stats() Stats {
	s := Stats{
		Calls:     p.calls.Load(),
		Failures:  make(map[Kind]uint64),
		Instances: p.instances.Load(),
		Recycled:  p.recycled.Load(),
	}
	for k := range p.failures {
		if n := p.failures[k].Load(); n > 0 {
			s.Failures[Kind(k)] = n
		}
	}
	return s
}
