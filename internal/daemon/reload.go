package daemon

import (
	"bytes"
	"context"
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

// watchConfig follows the config file until ctx is done: fsnotify on the
// folder that holds it (editors replace files by rename; a ConfigMap volume
// swaps a ..data symlink; both show up as events in the folder), and SIGHUP.
// A burst of events is one reload, and only when the file's content changed.
// The returned channel closes when the watcher has stopped.
func (d *daemon) watchConfig(ctx context.Context) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	dir := filepath.Dir(d.opts.ConfigPath)
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch config folder %s: %w", dir, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	last, _ := os.ReadFile(d.opts.ConfigPath)
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
				data, err := os.ReadFile(d.opts.ConfigPath)
				if err == nil && bytes.Equal(data, last) {
					continue // an event in the folder that did not change the file
				}
				if errors.Is(err, fs.ErrNotExist) {
					if last != nil {
						d.log.Warn("config file is gone; keeping the running rules until it is back", "config", d.opts.ConfigPath)
					}
					last = nil
					continue
				}
				last = data
				d.reload(ctx, "file changed")
			case <-hup:
				d.reload(ctx, "SIGHUP")
			}
		}
	}()
	return done, nil
}

// reload reads, parses, validates and compiles the config, and only then
// swaps the live rule set. On any error the running rules stay and the
// error is logged with its place.
func (d *daemon) reload(ctx context.Context, reason string) {
	start := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, err := config.Load(d.opts.ConfigPath)
	var set *rules.Set
	if err == nil {
		set, err = d.compile(cfg)
	}
	if err != nil {
		d.Reloads.Refused.Add(1)
		d.log.Error("config reload refused; the running rules stay", "reason", reason, "error", err.Error(), "took", time.Since(start))
		return
	}
	added, removed, changed := diffRules(d.current.Rules, set.Rules)
	d.restartNeeded(d.initial, cfg)
	res := d.eng.Apply(ctx, set)
	d.current = set
	if lvl, err := logging.ParseLevel(firstNonEmpty(d.opts.LogLevel, cfg.LogLevel)); err == nil {
		d.logs.SetLevel(lvl)
	}
	d.armShutdown(cfg)
	d.Reloads.OK.Add(1)
	d.log.Info("config reloaded", "reason", reason, "added", added, "removed", removed, "changed", changed,
		"informers_started", res.Started, "informers_stopped", res.Stopped, "pending", res.Pending, "took", time.Since(start))
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
