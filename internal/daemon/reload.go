package daemon

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/logging"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/rules"
)

// debounce is how long the folder must be quiet after a change before the
// config is read: an editor's write-then-rename or a ConfigMap volume's
// symlink swap is one burst, and one reload.
const debounce = 25 * time.Millisecond

// watchConfig follows the config file and the plugin files it names until
// ctx is done: fsnotify on the folders that hold them (editors replace files
// by rename; a ConfigMap volume swaps a ..data symlink; both show up as
// events in the folder), and SIGHUP. A burst of events is one reload, and
// only when the content of the config or of a plugin file differs from
// last, the fingerprint of what was last loaded. When the folders cannot be
// watched, the error is logged and SIGHUP still reloads. The returned
// channel closes when the watcher has stopped.
func (d *daemon) watchConfig(ctx context.Context, last []byte) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	w, err := d.newFileWatcher()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if err != nil {
		d.log.Error("cannot follow the config file; edits apply on SIGHUP only", "error", err)
	} else {
		events, errs = w.Events, w.Errors
	}
	done := make(chan struct{})
	quiet := time.NewTimer(0) // a first check catches edits made while starting
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		if w != nil {
			defer w.Close()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				d.log.Warn("config watch error", "error", err)
			case <-events:
				quiet.Reset(debounce)
			case <-quiet.C:
				data, err := os.ReadFile(d.opts.ConfigPath)
				if errors.Is(err, fs.ErrNotExist) {
					if last != nil {
						d.log.Warn("config file is gone; keeping the running rules until it is back", "config", d.opts.ConfigPath)
					}
					last = nil
					continue
				}
				d.mu.Lock()
				sum := fingerprint(data, d.attempted)
				d.mu.Unlock()
				if bytes.Equal(sum, last) {
					continue // an event in a folder that changed none of the files
				}
				last = d.reload(ctx, "file changed")
				d.watchPluginFolders(w)
			case <-hup:
				last = d.reload(ctx, "SIGHUP")
				d.watchPluginFolders(w)
			}
		}
	}()
	return done
}

// newFileWatcher watches the config file's folder and the plugin folders.
func (d *daemon) newFileWatcher() (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	if err := w.Add(filepath.Dir(d.opts.ConfigPath)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch config folder: %w", err)
	}
	d.watchPluginFolders(w)
	return w, nil
}

// watchPluginFolders adds the folders of the plugin files the last loaded
// config names to w (adding one twice is harmless); nothing without w.
func (d *daemon) watchPluginFolders(w *fsnotify.Watcher) {
	if w == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.attempted.Plugins {
		dir := filepath.Dir(pluginPath(d.attempted, p))
		if err := w.Add(dir); err != nil {
			d.log.Warn("cannot watch a plugin folder; changes to its plugins need a SIGHUP", "folder", dir, "error", err)
		}
	}
}

// fingerprint hashes config bytes and the plugin files cfg names (a missing
// file hashes as missing), so that a change to any of them is seen.
func fingerprint(data []byte, cfg *config.Config) []byte {
	h := sha256.New()
	h.Write(data)
	if cfg != nil {
		for _, p := range cfg.Plugins {
			wasm, err := os.ReadFile(pluginPath(cfg, p))
			if err != nil {
				wasm = []byte("missing")
			}
			sum := sha256.Sum256(wasm)
			h.Write(sum[:])
		}
	}
	return h.Sum(nil)
}

// reload reads, parses, validates and compiles the config and its plugins,
// and only then swaps the live rule and plugin sets. On any error the
// running ones stay and the error is logged with its place. It returns the
// fingerprint of what it read, applied or refused.
func (d *daemon) reload(ctx context.Context, reason string) []byte {
	start := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := os.ReadFile(d.opts.ConfigPath)
	if err != nil {
		metrics.ObserveReload(false)
		d.log.Error("config reload refused; the running rules stay", "reason", reason, "error", err.Error())
		return nil
	}
	running := *d.router.live.Load()
	cfg, err := config.Parse(data, d.opts.ConfigPath)
	if err == nil {
		d.attempted = cfg
	}
	// Taken before the plugin files are loaded: a file still being written
	// now is seen as changed again once complete.
	sum := fingerprint(data, d.attempted)
	var set *rules.Set
	var plugins pluginSet
	if err == nil {
		set, err = d.compile(cfg)
	}
	if err == nil {
		plugins, err = loadPlugins(ctx, d.host, cfg, running)
	}
	if err != nil {
		metrics.ObserveReload(false)
		d.log.Error("config reload refused; the running rules stay", "reason", reason, "error", err.Error(), "took", time.Since(start))
		return sum
	}
	added, removed, changed := diffRules(d.current.Rules, set.Rules)
	d.restartNeeded(d.initial, cfg)
	d.router.swap(plugins)
	res := d.eng.Apply(ctx, set)
	d.current = set
	ids := make([]string, len(set.Rules))
	for i, r := range set.Rules {
		ids[i] = r.ID
	}
	metrics.RetainRules(ids)
	if lvl, err := logging.ParseLevel(firstNonEmpty(d.opts.LogLevel, cfg.LogLevel)); err == nil {
		d.logs.SetLevel(lvl)
	}
	d.armShutdown(cfg)
	d.log.Debug("running informers", "watches", d.eng.Watches())
	metrics.ObserveReload(true)
	d.log.Info("config reloaded", "reason", reason, "added", added, "removed", removed, "changed", changed,
		"plugins_reloaded", plugins.changedFrom(running), "informers_started", res.Started,
		"informers_stopped", res.Stopped, "pending", res.Pending, "took", time.Since(start))
	return sum
}

// diffRules names the entries added, removed and changed between two rule
// sets. Entries are the same when their definitions are (rules.Rule.Key),
// wherever they stand in the file; an entry whose path stays while its
// definition changes is reported as changed.
func diffRules(old, new []*rules.Rule) (added, removed, changed []string) {
	keys := func(rs []*rules.Rule) map[string]bool {
		m := map[string]bool{}
		for _, r := range rs {
			m[r.Key] = true
		}
		return m
	}
	before, after := keys(old), keys(new)
	gone := map[string]bool{} // IDs of removed definitions
	for _, r := range old {
		if !after[r.Key] {
			gone[r.ID] = true
		}
	}
	for _, r := range new {
		switch {
		case before[r.Key]:
		case gone[r.ID]:
			changed = append(changed, r.ID)
			delete(gone, r.ID)
		default:
			added = append(added, r.ID)
		}
	}
	for _, r := range old {
		if gone[r.ID] {
			removed = append(removed, r.ID)
		}
	}
	return added, removed, changed
}

// restartNeeded warns about settings that cannot change while running; old
// is the config the daemon started with.
func (d *daemon) restartNeeded(old, new *config.Config) {
	if old.Workers != new.Workers {
		d.log.Warn("workers changed in the config; it applies after a restart", "running", old.Workers, "config", new.Workers)
	}
	if derefInt(old.MaxRetries) != derefInt(new.MaxRetries) {
		d.log.Warn("max_retries changed in the config; it applies after a restart", "running", derefInt(old.MaxRetries), "config", derefInt(new.MaxRetries))
	}
	if old.MaxPendingPerObject != new.MaxPendingPerObject {
		d.log.Warn("max_pending_per_object changed in the config; it applies after a restart", "running", old.MaxPendingPerObject, "config", new.MaxPendingPerObject)
	}
	if old.KeepLastApplied != new.KeepLastApplied {
		d.log.Warn("keep_last_applied changed in the config; it applies after a restart", "running", old.KeepLastApplied, "config", new.KeepLastApplied)
	}
	if old.StateDir != new.StateDir {
		d.log.Warn("state_dir changed in the config; it applies after a restart", "running", old.StateDir, "config", new.StateDir)
	}
}
