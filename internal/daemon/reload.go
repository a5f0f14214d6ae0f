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
	"reflect"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/logging"
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
// only when the content of the config or of a plugin file changed. The
// returned channel closes when the watcher has stopped.
func (d *daemon) watchConfig(ctx context.Context) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	if err := d.watchFolders(w); err != nil {
		w.Close()
		return nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	last, _ := d.fingerprint()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Close()
		defer signal.Stop(hup)
		quiet := time.NewTimer(time.Hour)
		quiet.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-w.Errors:
				d.log.Warn("config watch error", "error", err)
			case <-w.Events:
				quiet.Reset(debounce)
			case <-quiet.C:
				sum, err := d.fingerprint()
				if errors.Is(err, fs.ErrNotExist) && sum == nil {
					if last != nil {
						d.log.Warn("config file is gone; keeping the running rules until it is back", "config", d.opts.ConfigPath)
					}
					last = nil
					continue
				}
				if bytes.Equal(sum, last) {
					continue // an event in a folder that changed none of the files
				}
				last = sum
				d.reload(ctx, "file changed")
				if err := d.watchFolders(w); err != nil {
					d.log.Warn("cannot watch a plugin folder", "error", err)
				}
			case <-hup:
				d.reload(ctx, "SIGHUP")
			}
		}
	}()
	return done, nil
}

// watchFolders adds the config's folder and the running plugins' folders to
// w (adding one twice is harmless).
func (d *daemon) watchFolders(w *fsnotify.Watcher) error {
	dirs := []string{filepath.Dir(d.opts.ConfigPath)}
	for _, lp := range *d.router.live.Load() {
		dirs = append(dirs, filepath.Dir(lp.spec.Path))
	}
	for _, dir := range dirs {
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("watch folder %s: %w", dir, err)
		}
	}
	return nil
}

// fingerprint hashes the config file and the running plugins' files. It is
// nil with fs.ErrNotExist when the config file is missing; a missing plugin
// file only changes the hash (the reload then reports it).
func (d *daemon) fingerprint() ([]byte, error) {
	data, err := os.ReadFile(d.opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(data)
	for _, lp := range *d.router.live.Load() {
		if wasm, err := os.ReadFile(lp.spec.Path); err == nil {
			h.Write(wasm)
		}
	}
	return h.Sum(nil), nil
}

// reload reads, parses, validates and compiles the config and its plugins,
// and only then swaps the live rule and plugin sets. On any error the
// running ones stay and the error is logged with its place.
func (d *daemon) reload(ctx context.Context, reason string) {
	start := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	running := *d.router.live.Load()
	cfg, err := config.Load(d.opts.ConfigPath)
	var set *rules.Set
	var plugins pluginSet
	if err == nil {
		set, err = d.compile(cfg)
	}
	if err == nil {
		plugins, err = loadPlugins(ctx, d.host, cfg, running)
	}
	if err != nil {
		d.Reloads.Refused.Add(1)
		d.log.Error("config reload refused; the running rules stay", "reason", reason, "error", err.Error(), "took", time.Since(start))
		return
	}
	added, removed, changed := diffRules(d.current.Rules, set.Rules)
	d.restartNeeded(d.initial, cfg)
	d.router.live.Store(&plugins)
	res := d.eng.Apply(ctx, set)
	d.current = set
	running.closeUnshared(ctx, plugins)
	if lvl, err := logging.ParseLevel(firstNonEmpty(d.opts.LogLevel, cfg.LogLevel)); err == nil {
		d.logs.SetLevel(lvl)
	}
	d.armShutdown(cfg)
	d.Reloads.OK.Add(1)
	d.log.Info("config reloaded", "reason", reason, "added", added, "removed", removed, "changed", changed,
		"plugins_reloaded", plugins.changedFrom(running), "informers_started", res.Started,
		"informers_stopped", res.Stopped, "pending", res.Pending, "took", time.Since(start))
}

// diffRules names the entries added, removed and changed between two rule
// sets, by entry path.
func diffRules(old, new []*rules.Rule) (added, removed, changed []string) {
	before := map[string]config.Rule{}
	for _, r := range old {
		before[r.ID] = r.Rule
	}
	seen := map[string]bool{}
	for _, r := range new {
		seen[r.ID] = true
		prev, ok := before[r.ID]
		switch {
		case !ok:
			added = append(added, r.ID)
		case !reflect.DeepEqual(prev, r.Rule):
			changed = append(changed, r.ID)
		}
	}
	for _, r := range old {
		if !seen[r.ID] {
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
}
