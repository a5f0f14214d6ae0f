package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// startServer runs a Server on loopback ports until the test ends.
func startServer(t *testing.T, probes *Probes) *Server {
	t.Helper()
	s, err := NewServer(ServerOptions{MetricsAddr: "127.0.0.1:0", ProbeAddr: "127.0.0.1:0", Probes: probes})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape reads /metrics in the text format and parses it.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, "http://"+s.MetricsAddr().String()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// sample finds the value of the series of fam with exactly these labels
// (histograms: the sample count).
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	fam, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s not exported", name)
	}
	for _, m := range fam.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s has no series %v; has %v", name, labels, fam.Metric)
	return 0
}

func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, nil)
	before := scrape(t, s)
	if n := sample(t, before, "faro_config_reloads_total", map[string]string{"result": "refused"}); n != 0 {
		t.Errorf("reloads refused before any reload = %v", n)
	}

	ObserveEvent("apps/v1/deployments", "ADDED")
	ObserveEvent("apps/v1/deployments", "ADDED")
	ObserveEvent("v1/configmaps", "DELETED")
	ObserveMatch("resources[0]")
	ObserveCELError(`namespaces[0].resources["v1/secrets"]`)
	AddPending(3)
	AddPending(-1)
	ObserveProcessed(time.Now().Add(-20 * time.Millisecond))
	ObserveRetry()
	ObserveDrop()
	ObservePluginCall("changelog", PluginOK, 3*time.Millisecond)
	ObservePluginCall("changelog", PluginTimeout, time.Second)
	ObserveReload(true)
	ObserveReload(false)
	ObserveReload(false)
	AddInformers(2)
	SetLeader(true)

	fams := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"faro_events_total", map[string]string{"resource": "apps/v1/deployments", "type": "ADDED"}, 2},
		{"faro_events_total", map[string]string{"resource": "v1/configmaps", "type": "DELETED"}, 1},
		{"faro_matches_total", map[string]string{"rule": "resources[0]"}, 1},
		{"faro_cel_errors_total", map[string]string{"rule": `namespaces[0].resources["v1/secrets"]`}, 1},
		{"faro_queue_pending", nil, 2},
		{"faro_event_processing_seconds", nil, 1},
		{"faro_retries_total", nil, 1},
		{"faro_dropped_total", nil, 1},
		{"faro_plugin_calls_total", map[string]string{"plugin": "changelog", "result": "ok"}, 1},
		{"faro_plugin_calls_total", map[string]string{"plugin": "changelog", "result": "timeout"}, 1},
		{"faro_plugin_duration_seconds", map[string]string{"plugin": "changelog"}, 2},
		{"faro_config_reloads_total", map[string]string{"result": "ok"}, 1},
		{"faro_config_reloads_total", map[string]string{"result": "refused"}, 2},
		{"faro_informers", nil, 2},
		{"faro_leader", nil, 1},
	} {
		if got := sample(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := fams["faro_event_processing_seconds"].Metric[0].Histogram.GetSampleSum(); got < 0.02 {
		t.Errorf("faro_event_processing_seconds sum = %v, want >= 0.02", got)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "promhttp_metric_handler_requests_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}

	// A reload that removes a rule removes its series.
	RetainRules([]string{"resources[1]"})
	fams = scrape(t, s)
	if fam, ok := fams["faro_matches_total"]; ok {
		t.Errorf("faro_matches_total of a removed rule still exported: %v", fam.Metric)
	}
}

// TestClientGoMetrics makes requests with a real client-go client and finds
// them in the REST client metrics.
func TestClientGoMetrics(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	}))
	defer api.Close()
	kc, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL, QPS: 100, Burst: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := kc.Discovery().ServerVersion(); err != nil {
			t.Fatal(err)
		}
	}
	s := startServer(t, nil)
	fams := scrape(t, s)
	host := strings.TrimPrefix(api.URL, "http://")
	if got := sample(t, fams, "rest_client_requests_total", map[string]string{"code": "200", "method": "GET", "host": host}); got != 3 {
		t.Errorf("rest_client_requests_total = %v, want 3", got)
	}
	if got := sample(t, fams, "rest_client_request_duration_seconds", map[string]string{"verb": "GET", "host": host}); got != 3 {
		t.Errorf("rest_client_request_duration_seconds count = %v, want 3", got)
	}
	if got := sample(t, fams, "rest_client_rate_limiter_duration_seconds", map[string]string{"verb": "GET", "host": host}); got != 3 {
		t.Errorf("rest_client_rate_limiter_duration_seconds count = %v, want 3", got)
	}
}

func TestProbes(t *testing.T) {
	p := NewProbes()
	s := startServer(t, p)
	base := "http://" + s.ProbeAddr().String()
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "[-]started failed: no readiness check registered yet") {
		t.Errorf("/readyz without checks = %d %q, want 503: nothing has started", code, body)
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok" {
		t.Errorf("/healthz without checks = %d %q, want 200 ok", code, body)
	}
	config := p.Condition("config", "config not loaded")
	synced := errors.New("v1/configmaps in team-a not synced")
	p.AddReadyz("informers", CheckerFunc(func() error { return synced }))
	hb := NewHeartbeat(time.Minute)
	clock := time.Unix(1000, 0)
	hb.now = func() time.Time { return clock }
	p.AddHealthz("workers", hb)

	steps := []struct {
		name     string
		change   func()
		path     string
		wantCode int
		want     []string
		dontWant []string
	}{
		{"nothing ready", nil, "/readyz", 503,
			[]string{"[-]config failed: config not loaded", "[-]informers failed: v1/configmaps in team-a not synced", "readyz check failed"}, nil},
		{"config loaded", func() { config.Set(nil) }, "/readyz", 503,
			[]string{"[+]config ok", "[-]informers failed: v1/configmaps in team-a not synced"}, nil},
		{"all synced", func() { synced = nil }, "/readyz", 200, []string{"ok"}, []string{"failed"}},
		{"verbose", nil, "/readyz?verbose", 200, []string{"[+]config ok", "[+]informers ok", "readyz check passed"}, nil},
		{"idle workers are healthy", nil, "/healthz", 200, []string{"ok"}, nil},
		{"busy within the limit", func() { hb.Begin(); clock = clock.Add(59 * time.Second) }, "/healthz", 200, []string{"ok"}, nil},
		{"stuck worker", func() { hb.Begin(); clock = clock.Add(2 * time.Second) }, "/healthz", 503,
			[]string{"[-]workers failed: 1 of 2 units of work running longer than 1m0s (oldest 1m1s)"}, nil},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		code, body := get(t, base+st.path)
		if code != st.wantCode {
			t.Errorf("%s: %s = %d, want %d\n%s", st.name, st.path, code, st.wantCode, body)
		}
		for _, w := range st.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s: %s body lacks %q:\n%s", st.name, st.path, w, body)
			}
		}
		for _, w := range st.dontWant {
			if strings.Contains(body, w) {
				t.Errorf("%s: %s body has %q:\n%s", st.name, st.path, w, body)
			}
		}
	}
}

func TestHeartbeatEnd(t *testing.T) {
	hb := NewHeartbeat(time.Second)
	clock := time.Unix(0, 0)
	hb.now = func() time.Time { return clock }
	a, b := hb.Begin(), hb.Begin()
	clock = clock.Add(2 * time.Second)
	hb.End(a)
	if err := hb.Check(); err == nil || !strings.Contains(err.Error(), "1 of 1") {
		t.Errorf("one stuck unit: Check = %v", err)
	}
	hb.End(b)
	if err := hb.Check(); err != nil {
		t.Errorf("all ended: Check = %v", err)
	}
}

func TestServerAddresses(t *testing.T) {
	off, err := NewServer(ServerOptions{MetricsAddr: "0", ProbeAddr: ""})
	if err != nil {
		t.Fatal(err)
	}
	if off.MetricsAddr() != nil || off.ProbeAddr() != nil || off.PprofAddr() != nil {
		t.Errorf("off: addresses %v %v %v", off.MetricsAddr(), off.ProbeAddr(), off.PprofAddr())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = NewServer(ServerOptions{MetricsAddr: "127.0.0.1:0", ProbeAddr: ln.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), "--health-probe-bind-address "+ln.Addr().String()) {
		t.Errorf("address in use: err = %v", err)
	}
}

// TestPprof: the profiles are served on their own listener when asked for
// in a binary built with -tags pprof; without it, asking is an error.
func TestPprof(t *testing.T) {
	s, err := NewServer(ServerOptions{PprofAddr: "127.0.0.1:0"})
	if !pprofBuilt {
		if err == nil || !strings.Contains(err.Error(), "-tags pprof") {
			t.Fatalf("NewServer without the pprof tag: %v, want an error naming the tag", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + s.PprofAddr().String() + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Errorf("GET /debug/pprof/heap: %s\n%.200s", resp.Status, body)
	}
}
