package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/faro-dev/faro/internal/testcluster"
)

// freeAddr returns a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testcluster.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func get(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue scrapes /metrics at addr and returns the value of one
// series, named with its labels as the exposition format prints them; 0
// when it is absent.
func metricValue(addr, series string) float64 {
	_, body := get("http://" + addr + "/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestMetricsAndProbes: the binary serves /metrics with the engine's,
// plugins' and reloads' series, /readyz once its informers have synced and
// /healthz while it works.
func TestMetricsAndProbes(t *testing.T) {
	ns := createNamespace(t, "metrics")
	cfg := configFile(t, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	metricsAddr, probeAddr := freeAddr(t), freeAddr(t)
	p := startProcess(t, cfg, "--metrics-bind-address", metricsAddr, "--health-probe-bind-address", probeAddr)
	deadline := time.Now().Add(waitTime)
	for {
		code, body := get("http://" + probeAddr + "/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became ready: %d %s\n%s", code, body, p.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get("http://" + probeAddr + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	createCM(t, ns, "a", nil)
	p.waitFor(t, "the event", hasMsg(msg("ADDED", "v1/configmaps", ns+"/a")))
	// The event counts as pending until its last handler is done, a moment
	// after its line is written.
	for metricValue(metricsAddr, "faro_queue_pending") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("faro_queue_pending never fell back to 0")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, body := get("http://" + metricsAddr + "/metrics")
	for _, want := range []string{
		`faro_events_total{resource="v1/configmaps",type="ADDED"}`,
		`faro_matches_total{rule="resources[0]"} 1`,
		`faro_informers 1`,
		`faro_leader 1`,
		`faro_queue_pending 0`,
		`faro_event_processing_seconds_count`,
		`faro_config_reloads_total{result="refused"} 0`,
		`rest_client_requests_total`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
