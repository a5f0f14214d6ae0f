package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/rules"
)

func TestDiffRules(t *testing.T) {
	set := func(yaml string) []*rules.Rule {
		cfg, err := config.Parse([]byte(yaml), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		s, err := rules.Compile(cfg, rules.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Rules
	}
	old := set("resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/secrets}\n  - {gvr: v1/pods}\n")
	new := set("resources:\n  - {gvr: v1/configmaps}\n  - {gvr: v1/secrets, name_pattern: x}\n")
	added, removed, changed := diffRules(old, new)
	if len(added) != 0 || !slices.Equal(removed, []string{"resources[2]"}) || !slices.Equal(changed, []string{"resources[1]"}) {
		t.Errorf("diff = added %v removed %v changed %v", added, removed, changed)
	}
	added, removed, changed = diffRules(new, old)
	if !slices.Equal(added, []string{"resources[2]"}) || len(removed) != 0 || !slices.Equal(changed, []string{"resources[1]"}) {
		t.Errorf("reverse diff = added %v removed %v changed %v", added, removed, changed)
	}
	// An entry inserted above the others moves their paths, not their
	// identity: only the new one is added.
	moved := set("resources:\n  - {gvr: v1/nodes}\n  - {gvr: v1/configmaps}\n  - {gvr: v1/secrets}\n  - {gvr: v1/pods}\n")
	added, removed, changed = diffRules(old, moved)
	if !slices.Equal(added, []string{"resources[0]"}) || len(removed) != 0 || len(changed) != 0 {
		t.Errorf("insert diff = added %v removed %v changed %v", added, removed, changed)
	}
}

// TestSIGHUPWithoutFileWatch: when the config folder cannot be watched,
// SIGHUP still reloads (and does not kill the process, its default action).
func TestSIGHUPWithoutFileWatch(t *testing.T) {
	d := &daemon{opts: Options{ConfigPath: filepath.Join(t.TempDir(), "gone", "faro.yaml")}, log: hclog.NewNullLogger(), attempted: &config.Config{}}
	refused := reloads(t, "refused")
	ctx, cancel := context.WithCancel(context.Background())
	done := d.watchConfig(ctx, nil)
	defer func() {
		cancel()
		<-done
	}()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for reloads(t, "refused") == refused {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloads reads faro_config_reloads_total for one result.
func reloads(t *testing.T, result string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "faro_config_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no faro_config_reloads_total{result=%q}", result)
	return 0
}

// TestRestartNeeded: a reload that changes a setting read only at start
// says so, naming it, and one that changes none says nothing.
func TestRestartNeeded(t *testing.T) {
	three := 3
	tests := []struct {
		setting string
		edit    func(*config.Config)
	}{
		{"nothing", func(*config.Config) {}},
		{"workers", func(c *config.Config) { c.Workers = 8 }},
		{"max_retries", func(c *config.Config) { c.MaxRetries = &three }},
		{"max_pending_per_object", func(c *config.Config) { c.MaxPendingPerObject = 10 }},
		{"keep_last_applied", func(c *config.Config) { c.KeepLastApplied = true }},
		{"state_dir", func(c *config.Config) { c.StateDir = "/var/lib/faro" }},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			var out strings.Builder
			d := &daemon{log: hclog.New(&hclog.LoggerOptions{Output: &out})}
			old := &config.Config{Workers: 4}
			cur := *old
			tt.edit(&cur)
			d.restartNeeded(old, &cur)
			lines := strings.Count(out.String(), "it applies after a restart")
			switch {
			case tt.setting == "nothing" && lines != 0:
				t.Errorf("nothing changed, but: %s", out.String())
			case tt.setting != "nothing" && (lines != 1 || !strings.Contains(out.String(), tt.setting+" changed")):
				t.Errorf("changing %s logged %q, want one warning naming it", tt.setting, out.String())
			}
		})
	}
}
