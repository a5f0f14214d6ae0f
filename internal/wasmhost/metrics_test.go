package wasmhost_test

import (
	"context"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/metrics"
	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// TestCallMetrics checks that every call lands in faro_plugin_calls_total
// under its result and in faro_plugin_duration_seconds. The registry is the
// process's, so what is checked is what the calls add to it.
func TestCallMetrics(t *testing.T) {
	// Only the looping call gets a short timeout: under -race on a busy
	// machine the other behaviours can take longer than one.
	p := load(t, wasmhost.PluginSpec{Name: "metered"})
	quick := load(t, wasmhost.PluginSpec{Name: "metered", Timeout: 300 * time.Millisecond})
	before, observedBefore := pluginMetrics(t, "metered")
	for _, behaviour := range []string{"nap", "nap", "error", "panic", "trap", "flood"} {
		_, _ = p.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Type: "ADDED", Name: behaviour}})
	}
	_, _ = quick.Handle(context.Background(), &wasmhost.Event{Header: abi.Header{Type: "ADDED", Name: "loop"}})
	want := map[string]uint64{"ok": 2, "error": 1, "panic": 1, "trap": 1, "timeout": 1, "output": 1}
	got, observed := pluginMetrics(t, "metered")
	for result, n := range want {
		if d := got[result] - before[result]; d != n {
			t.Errorf("faro_plugin_calls_total{plugin=metered,result=%s} grew by %d, want %d (all: %v)", result, d, n, got)
		}
	}
	if d := observed - observedBefore; d != 7 {
		t.Errorf("faro_plugin_duration_seconds{plugin=metered} count grew by %d, want 7", d)
	}
}

// pluginMetrics returns faro_plugin_calls_total of a plugin by result, and
// its faro_plugin_duration_seconds sample count.
func pluginMetrics(t *testing.T, plugin string) (calls map[string]uint64, observed uint64) {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	calls = map[string]uint64{}
	for _, fam := range fams {
		for _, m := range fam.Metric {
			labels := map[string]string{}
			for _, lp := range m.Label {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["plugin"] != plugin {
				continue
			}
			switch fam.GetName() {
			case "faro_plugin_calls_total":
				calls[labels["result"]] = uint64(m.Counter.GetValue())
			case "faro_plugin_duration_seconds":
				observed = m.Histogram.GetSampleCount()
			}
		}
	}
	return calls, observed
}
