package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/engine"
	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// loadedPlugin is one compiled plugin and what it was built from, so that a
// reload can tell whether it must be rebuilt.
type loadedPlugin struct {
	plugin  *wasmhost.Plugin
	spec    wasmhost.PluginSpec
	sum     [sha256.Size]byte // of the .wasm file
	retryOn []wasmhost.Kind   // failure kinds after which the event is retried
}

// pluginSet is the plugins of one config, by name. Replaced whole on reload.
type pluginSet map[string]*loadedPlugin

// pluginPath resolves a plugin's path relative to the config file.
func pluginPath(cfg *config.Config, p config.Plugin) string {
	return cfg.FilePath(p.Path)
}

// loadPlugins compiles the plugins cfg declares, reusing from prev those
// whose file and settings did not change. Every problem is returned, each
// with its place. On error nothing new stays loaded.
func loadPlugins(ctx context.Context, host *wasmhost.Host, cfg *config.Config, prev pluginSet) (pluginSet, error) {
	set := pluginSet{}
	var errs config.Errors
	for i, p := range cfg.Plugins {
		path := fmt.Sprintf("plugins[%d]", i)
		spec, err := pluginSpec(cfg, p)
		if err != nil {
			errs = append(errs, cfg.Errorf(path, "%v", err))
			continue
		}
		retryOn, bad := retryKinds(cfg, path, p.RetryOn)
		if len(bad) > 0 {
			errs = append(errs, bad...)
			continue
		}
		data, err := os.ReadFile(spec.Path)
		if err != nil {
			errs = append(errs, cfg.Errorf(path+".path", "cannot read plugin: %v", err))
			continue
		}
		sum := sha256.Sum256(data)
		if old, ok := prev[p.Name]; ok && old.sum == sum && reflect.DeepEqual(old.spec, spec) && slices.Equal(old.retryOn, retryOn) {
			set[p.Name] = old
			continue
		}
		plugin, err := host.Load(ctx, spec)
		if err != nil {
			place := path + ".path"
			if errors.As(err, new(*wasmhost.ConfigError)) {
				place = path + ".config"
			}
			errs = append(errs, cfg.Errorf(place, "%v", err))
			continue
		}
		set[p.Name] = &loadedPlugin{plugin: plugin, spec: spec, sum: sum, retryOn: retryOn}
	}
	if len(errs) > 0 {
		set.closeUnshared(ctx, prev)
		return nil, errs
	}
	return set, nil
}

// retryKinds parses a plugin's retry_on (at path): the kinds named, or
// [error] when it is unset.
func retryKinds(cfg *config.Config, path string, names []string) ([]wasmhost.Kind, config.Errors) {
	if names == nil {
		return []wasmhost.Kind{wasmhost.KindError}, nil
	}
	var kinds []wasmhost.Kind
	var errs config.Errors
	for j, name := range names {
		k, ok := wasmhost.ParseKind(name)
		if !ok {
			errs = append(errs, cfg.Errorf(fmt.Sprintf("%s.retry_on[%d]", path, j),
				"unknown failure kind %q; kinds are %s", name, strings.Join(wasmhost.KindNames(), ", ")))
			continue
		}
		kinds = append(kinds, k)
	}
	return kinds, errs
}

func pluginSpec(cfg *config.Config, p config.Plugin) (wasmhost.PluginSpec, error) {
	conf, err := p.ConfigJSON()
	if err != nil {
		return wasmhost.PluginSpec{}, err
	}
	mem, err := p.MemoryLimitBytes()
	if err != nil {
		return wasmhost.PluginSpec{}, err
	}
	return wasmhost.PluginSpec{
		Name:         p.Name,
		Path:         pluginPath(cfg, p),
		Config:       conf,
		Timeout:      time.Duration(p.Timeout),
		MemoryLimit:  mem,
		AllowedHosts: p.AllowedHosts,
		MaxCalls:     p.MaxCalls,
	}, nil
}

// closeUnshared closes the plugins of s that other does not share.
func (s pluginSet) closeUnshared(ctx context.Context, other pluginSet) {
	for name, lp := range s {
		if other[name] != lp {
			_ = lp.plugin.Close(ctx)
		}
	}
}

// changedFrom names the plugins of s that are not shared with prev: new
// ones and rebuilt ones.
func (s pluginSet) changedFrom(prev pluginSet) []string {
	var names []string
	for name, lp := range s {
		if prev[name] != lp {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// retireAfter is how long a plugin replaced by a reload keeps serving the
// events that were matched under the rules it belonged to, before it is
// closed. It exceeds any sane plugin timeout times the retries of an event.
const retireAfter = time.Minute

// router is the engine's Handler: it hands a matched event to the named
// plugin of the live plugin set and writes the records the plugin emits.
type router struct {
	live   atomic.Pointer[pluginSet]
	events hclog.Logger
	diag   hclog.Logger
	json   bool

	mu       sync.Mutex
	retiring []*pluginSet // dropped by reloads, each closed retireAfter after its reload
}

// swap makes next the live plugin set. The plugins it drops keep serving
// events matched under the old rules (still queued or in flight) for
// retireAfter, then are closed.
func (r *router) swap(next pluginSet) {
	prev := r.live.Swap(&next)
	if prev == nil {
		return
	}
	old := pluginSet{}
	for name, lp := range *prev {
		if next[name] != lp {
			old[name] = lp
		}
	}
	if len(old) == 0 {
		return
	}
	r.mu.Lock()
	r.retiring = append(r.retiring, &old)
	r.mu.Unlock()
	time.AfterFunc(retireAfter, func() {
		r.mu.Lock()
		r.retiring = slices.DeleteFunc(r.retiring, func(s *pluginSet) bool { return s == &old })
		r.mu.Unlock()
		old.closeUnshared(context.Background(), nil)
	})
}

// lookup finds a plugin by name in the live set, else among the retiring
// (the most recently retired first).
func (r *router) lookup(name string) *loadedPlugin {
	if lp := (*r.live.Load())[name]; lp != nil {
		return lp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.retiring) - 1; i >= 0; i-- {
		if lp := (*r.retiring[i])[name]; lp != nil {
			return lp
		}
	}
	return nil
}

// Handle implements engine.Handler. A failure of a kind the plugin's
// retry_on lists (by default only its own error, KindError) goes back to the
// queue to be retried; any other (a panic, trap, timeout, memory overrun or
// output overflow) is logged with its kind and counted by the plugin, and
// the event goes on: retrying would most likely fail the same way.
func (r *router) Handle(ctx context.Context, m *engine.Matched, name string) error {
	lp := r.lookup(name)
	if lp == nil {
		return fmt.Errorf("plugin %q is not loaded", name)
	}
	ev := pluginEvent(m)
	res, err := lp.plugin.Handle(ctx, ev)
	if err != nil {
		var perr *wasmhost.Error
		if errors.As(err, &perr) && !lp.retries(err) {
			r.diag.Error("plugin failed; event not retried", "plugin", name, "kind", perr.Kind.String(),
				"object", m.Key(), "gvr", ev.GVR, "error", perr.Err)
			return nil
		}
		return err
	}
	for _, rec := range res.Records {
		msg := fmt.Sprintf("PLUGIN [%s] %s %s", name, ev.GVR, m.Key())
		if r.json {
			r.events.Info(msg, "plugin", name, "event_type", ev.Type, "gvr", ev.GVR, "namespace", ev.Namespace,
				"name", ev.Name, "rule", ev.Rule, "record", rec)
		} else {
			r.events.Info(msg+" "+string(rec), "rule", ev.Rule)
		}
	}
	return nil
}

// pluginEvent is the event a plugin gets for m.
func pluginEvent(m *engine.Matched) *wasmhost.Event {
	ev := &wasmhost.Event{
		Header: abi.Header{
			Type: string(m.Type), GVR: m.GVRString(), Namespace: m.Object.GetNamespace(), Name: m.Object.GetName(),
			UID: string(m.Object.GetUID()), ResourceVersion: m.Object.GetResourceVersion(), Rule: m.Rule.ID,
			Initial: m.Initial,
		},
		Object: m.Object.Object,
	}
	if m.OldObject != nil {
		ev.OldObject = m.OldObject.Object
	}
	return ev
}

// Plugin is one plugin loaded as the daemon loads it (same limits, sandbox
// and compilation cache), outside any cluster: `faro plugin run`.
type Plugin struct {
	host *wasmhost.Host
	lp   *loadedPlugin
}

// OpenPlugin loads p (its path relative to the working directory), logging
// the plugin's logs to log. Load problems are config.Errors, as from faro
// validate.
func OpenPlugin(ctx context.Context, p config.Plugin, log hclog.Logger) (*Plugin, error) {
	host, err := wasmhost.New(wasmhost.Options{PoolSize: 1, Logger: log})
	if err != nil {
		return nil, err
	}
	set, err := loadPlugins(ctx, host, &config.Config{Plugins: []config.Plugin{p}}, nil)
	if err != nil {
		host.Close(ctx)
		return nil, err
	}
	return &Plugin{host: host, lp: set[p.Name]}, nil
}

// Handle runs m through the plugin and returns the records it emitted. A
// failure is a *wasmhost.Error; Retried says whether the daemon would
// retry it.
func (p *Plugin) Handle(ctx context.Context, m *engine.Matched) ([]json.RawMessage, error) {
	res, err := p.lp.plugin.Handle(ctx, pluginEvent(m))
	return res.Records, err
}

// Retried reports whether the daemon retries an event that failed with err.
func (p *Plugin) Retried(err error) bool { return p.lp.retries(err) }

// retries reports whether an event that failed with err is retried: a
// failure of a kind retry_on lists, or of a plugin closed under the event
// (replaced by a reload).
func (lp *loadedPlugin) retries(err error) bool {
	var perr *wasmhost.Error
	if err == nil || errors.Is(err, wasmhost.ErrClosed) || !errors.As(err, &perr) {
		return err != nil
	}
	return slices.Contains(lp.retryOn, perr.Kind)
}

// Close closes the plugin and its host.
func (p *Plugin) Close(ctx context.Context) error { return p.host.Close(ctx) }
