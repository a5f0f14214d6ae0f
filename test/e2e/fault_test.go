package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// The fault suite: what Faro keeps of its promise (every change once, in
// order per object) when the world around it misbehaves.

// writeLog records the resource versions of the writes a test made, per
// object name.
type writeLog struct {
	mu  sync.Mutex
	rvs map[string][]string
}

func (w *writeLog) add(name, rv string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rvs == nil {
		w.rvs = map[string][]string{}
	}
	w.rvs[name] = append(w.rvs[name], rv)
}

func (w *writeLog) of(name string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.rvs[name])
}

// update writes a new value into ConfigMap ns/name through c and records
// the version it got. It may run on a goroutine of its own: a failure is
// an error of the test, not its end.
func (w *writeLog) update(t *testing.T, c kubernetes.Interface, ns, name string) {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err == nil {
		cm.Data = map[string]string{"v": strconv.FormatInt(time.Now().UnixNano(), 10)}
		cm, err = c.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Errorf("update configmap %s/%s: %v", ns, name, err)
		return
	}
	w.add(name, cm.ResourceVersion)
}

// reported returns the resource versions of the UPDATED events of ns/name.
func reported(evs []event, ns, name string) []string {
	var out []string
	for _, e := range evs {
		if e.Namespace == ns && e.Name == name && e.Type == "UPDATED" {
			out = append(out, e.ResourceVersion)
		}
	}
	return out
}

// checkIncreasing fails unless rvs are strictly increasing: each state
// once, in order.
func checkIncreasing(t *testing.T, what string, rvs []string) {
	t.Helper()
	for i := 1; i < len(rvs); i++ {
		a, _ := strconv.ParseUint(rvs[i-1], 10, 64)
		b, _ := strconv.ParseUint(rvs[i], 10, 64)
		if b <= a {
			t.Errorf("%s: resource version %s reported after %s (all: %v)", what, rvs[i], rvs[i-1], rvs)
			return
		}
	}
}

// checkContains fails unless every version in want was reported.
func checkContains(t *testing.T, what string, got, want []string) {
	t.Helper()
	for _, rv := range want {
		if !slices.Contains(got, rv) {
			t.Errorf("%s: the write at resource version %s was not reported (reported: %v)", what, rv, got)
		}
	}
}

// TestWatchCompactedUnderChurn: while Faro's apiserver is away, objects keep
// changing and etcd is compacted past Faro's resource version. The apiserver
// comes back without its watch cache, so Faro's watch resumes against etcd
// itself and meets 410 Gone only because of the compaction, and Faro lists
// again. Every change Faro could see is reported once and in order: the
// writes before and after the outage each once, the outage's writes as the
// state the relist found, nothing twice.
func TestWatchCompactedUnderChurn(t *testing.T) {
	ns := createNamespace(t, "compact")
	names := []string{"a", "b", "c", "d", "e"}
	for _, n := range names {
		createCM(t, ns, n, nil)
	}
	f := startFaro(t, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	watch := "v1/configmaps in " + ns
	var before, during, after writeLog
	churn := func(w *writeLog, c kubernetes.Interface) {
		for range 3 {
			for _, n := range names {
				w.update(t, c, ns, n)
			}
		}
	}
	churn(&before, kube)
	last := before.of("e")
	oldRV := last[len(last)-1]
	f.waitFor(waitTime, "the last write before the outage", func(evs []event, _ []string) bool {
		return slices.Contains(reported(evs, ns, "e"), oldRV)
	})
	if n := f.countDiag("informer listed again", watch); n != 0 {
		t.Fatalf("faro listed again %d times before the outage", n)
	}
	cluster.SetWatchCache(false)
	defer func() {
		// The other tests run against the apiserver as configured.
		cluster.SetWatchCache(true)
		if err := cluster.RestartAPIServer(); err != nil {
			t.Fatalf("restart apiserver with its watch cache: %v", err)
		}
	}()
	duringOutage(t, func(kube2 kubernetes.Interface) {
		churn(&during, kube2)
		if _, err := cluster.CompactEtcd(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
	// What Faro's watch met when it resumed, served by etcd: history
	// before the compaction is gone.
	w, err := kube.CoreV1().ConfigMaps(ns).Watch(t.Context(), metav1.ListOptions{ResourceVersion: oldRV})
	if err == nil {
		ev := <-w.ResultChan()
		w.Stop()
		if err = apierrors.FromObject(ev.Object); ev.Type != apiwatch.Error {
			t.Fatalf("a watch from resource version %s after the compaction got %s %v, want 410 Gone", oldRV, ev.Type, ev.Object)
		}
	}
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("a watch from resource version %s after the compaction: %v, want 410 Gone", oldRV, err)
	}
	// Faro lists again once its reflector's backoff after the outage (up
	// to 30s) has passed.
	f.waitDiag(90*time.Second, "informer listed again", watch)
	createCM(t, ns, "relisted", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/relisted"), waitTime)
	churn(&after, kube)
	f.settle(func() { createCM(t, ns, "marker", nil) }, msg("ADDED", "v1/configmaps", ns+"/marker"))

	evs := f.snapshot()
	for _, n := range names {
		got := reported(evs, ns, n)
		checkIncreasing(t, n, got)
		checkContains(t, n, got, before.of(n))
		checkContains(t, n, got, after.of(n))
		if d := during.of(n); !slices.Contains(got, d[len(d)-1]) {
			t.Errorf("%s: the state the relist found (resource version %s) was not reported: %v", n, d[len(d)-1], got)
		}
	}
	if !f.running() {
		t.Fatal("faro stopped")
	}
}

// TestReloadStormUnderChurn: 100 reloads, valid and invalid in turn, while
// an object changes all along. The rule that stays in every valid config
// sees each update exactly once and in order, every refused reload is
// counted, and no goroutine or informer is left behind.
func TestReloadStormUnderChurn(t *testing.T) {
	ns := createNamespace(t, "storm")
	createCM(t, ns, "stay", nil)
	stay := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: '^stay$'\n", ns)
	variants := []string{
		stay + fmt.Sprintf("  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    label_selector: 'tier=a'\n", ns),
		stay + fmt.Sprintf("  - gvr: v1/secrets\n    namespace_patterns: [%q]\n", ns),
	}
	invalid := stay + "  - gvr: v1/configmaps\n    cel: 'object.('\n"
	f := startFaro(t, variants[1])
	informers := func() int { return f.countDiag(`"informer started"`) - f.countDiag(`"informer stopped"`) }
	startInformers, startGoroutines := informers(), runtime.NumGoroutine()

	var writes writeLog
	stop := make(chan struct{})
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				writes.update(t, kube, ns, "stay")
			}
		}
	}()
	for i := range 100 {
		if i%2 == 1 {
			f.rewrite(invalid+fmt.Sprintf("# %d\n", i), refused)
		} else {
			f.rewrite(variants[(i/2)%2], reloaded)
		}
	}
	close(stop)
	<-churned
	f.settle(func() { writes.update(t, kube, ns, "stay") }, msg("UPDATED", "v1/configmaps", ns+"/stay"))
	f.waitFor(waitTime, "every update of stay", func(evs []event, _ []string) bool {
		return len(reported(evs, ns, "stay")) >= len(writes.of("stay"))
	})

	got := reported(f.snapshot(), ns, "stay")
	if !slices.Equal(got, writes.of("stay")) {
		t.Errorf("stay's updates reported %v, want each write once in order: %v", got, writes.of("stay"))
	}
	if n := f.countDiag(refused); n != 50 {
		t.Errorf("%d reloads refused, want 50", n)
	}
	if n := informers(); n != startInformers {
		t.Errorf("%d informers run after the storm, %d before", n, startInformers)
	}
	// Goroutines of stopped informers and plugins wind down shortly after.
	deadline := time.Now().Add(30 * time.Second)
	for runtime.NumGoroutine() > startGoroutines+5 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > startGoroutines+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the storm, %d before:\n%s", n, startGoroutines, buf[:runtime.Stack(buf, true)])
	}
}

// TestKillDuringBurst: Faro with state_dir is killed with SIGKILL while a
// burst of updates is arriving, and restarted on the same state. Every
// object's final state is reported; each run reports in order; what both
// runs report is only what the first was delivering when it died (the
// object's last state it reported), never older history.
func TestKillDuringBurst(t *testing.T) {
	ns := createNamespace(t, "burst")
	cfg := configFile(t, fmt.Sprintf("state_dir: state\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	names := createCMs(t, ns, 30)
	first := startProcess(t, cfg)
	first.waitFor(t, "30 initial ADDED", func(evs []event) bool { return len(evs) == 30 })

	var writes writeLog
	burst := make(chan struct{})
	go func() {
		defer close(burst)
		for range 10 {
			for _, n := range names {
				writes.update(t, kube, ns, n)
			}
		}
	}()
	first.waitFor(t, "100 updates", func(evs []event) bool { return len(evs) >= 130 })
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	<-burst

	second := startProcess(t, cfg)
	createCM(t, ns, "marker", nil)
	second.waitFor(t, "the marker", hasMsg(msg("ADDED", "v1/configmaps", ns+"/marker")))
	one, two := first.snapshot(), second.snapshot()
	for _, n := range names {
		a, b := reported(one, ns, n), reported(two, ns, n)
		checkIncreasing(t, n+" before the kill", a)
		checkIncreasing(t, n+" after the restart", b)
		w := writes.of(n)
		if !slices.Contains(a, w[len(w)-1]) && !slices.Contains(b, w[len(w)-1]) {
			t.Errorf("%s: the final state (resource version %s) was never reported: %v then %v", n, w[len(w)-1], a, b)
		}
		for _, rv := range b {
			if slices.Contains(a, rv) && rv != a[len(a)-1] {
				t.Errorf("%s: the restart replayed resource version %s, older than the last the first run reported (%v then %v)", n, rv, a, b)
			}
		}
	}
	for _, e := range two {
		if e.Type == "ADDED" && e.Initial {
			t.Errorf("the restart reported %s as initial", e)
		}
	}
}

// TestPluginFaultsUnderLoad: four rounds of 300 ConfigMaps created at full
// speed; in each, 1% make the plugin trap, 1% loop past its timeout and 1%
// blow its memory limit. Every other event reaches the plugin exactly once,
// each failure is counted under its kind, and resident memory stays under
// one ceiling throughout.
func TestPluginFaultsUnderLoad(t *testing.T) {
	ns := createNamespace(t, "faults")
	cfg := configFile(t, fmt.Sprintf(`
plugins:
  - name: faulty
    path: %s
    timeout: 2s
    memory_limit: 16Mi
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    plugins: [faulty]
`, filepath.Join(builtPlugins(t), "guest.wasm"), ns))
	metricsAddr := freeAddr(t)
	t.Setenv("GOMEMLIMIT", "160MiB")
	p := startProcess(t, cfg, "--workers", "4", "--metrics-bind-address", metricsAddr)
	calls := func(result string) float64 {
		return metricValue(metricsAddr, fmt.Sprintf(`faro_plugin_calls_total{plugin="faulty",result=%q}`, result))
	}
	var echoes []string
	round := func(r int) {
		// The guest acts on the name up to its first dot.
		var names []string
		for _, kind := range []string{"trap", "loop", "oom"} {
			for i := range 3 {
				names = append(names, fmt.Sprintf("%s.%d.%d", kind, r, i))
			}
		}
		for i := range 291 {
			names = append(names, fmt.Sprintf("echo.%d.%d", r, i))
		}
		echoes = append(echoes, names[9:]...)
		slices.SortFunc(names, func(a, b string) int {
			return strings.Compare(a[strings.IndexByte(a, '.'):], b[strings.IndexByte(b, '.'):])
		})
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < len(names); i += 8 {
					createCM(t, ns, names[i], nil)
				}
			})
		}
		wg.Wait()
		p.waitFor(t, fmt.Sprintf("round %d's records and failures", r), func([]event) bool {
			p.mu.Lock()
			n := len(p.records)
			p.mu.Unlock()
			return n >= len(echoes) && calls("trap")+calls("timeout")+calls("oom") >= float64(9*r)
		})
	}
	// With the Go heap held to GOMEMLIMIT, resident memory stays under one
	// ceiling however many faults pass: a failed instance's memory (up to
	// its 16Mi limit) is released with it. The timeout is long enough
	// for a memory-hungry call to reach its limit first on a busy machine.
	// Flat: after the first round (instances created, the module loaded),
	// later rounds add at most growth; each fault costs its instance, and a
	// leaked one would be up to the 16 MiB memory limit.
	const rounds, ceiling, growth = 4, 256 << 20, 16 << 20
	var first float64
	for r := 1; r <= rounds; r++ {
		round(r)
		rss := metricValue(metricsAddr, "process_resident_memory_bytes")
		t.Logf("resident memory after round %d: %.1f MiB", r, rss/(1<<20))
		if rss > ceiling {
			t.Errorf("resident memory %.0f MiB after round %d of faults, over %d MiB", rss/(1<<20), r, ceiling>>20)
		}
		if r == 1 {
			first = rss
		} else if rss > first+growth {
			t.Errorf("resident memory %.0f MiB after round %d of faults, %.0f MiB after the first: it grows with the faults", rss/(1<<20), r, first/(1<<20))
		}
	}

	for result, want := range map[string]float64{"ok": 291 * rounds, "trap": 3 * rounds, "timeout": 3 * rounds, "oom": 3 * rounds, "error": 0} {
		if got := calls(result); got != want {
			t.Errorf("faro_plugin_calls_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	p.mu.Lock()
	seen := map[string]int{}
	for _, r := range p.records {
		var rec struct{ Key string }
		_ = json.Unmarshal(r.Record, &rec)
		seen[rec.Key]++
	}
	p.mu.Unlock()
	for _, n := range echoes {
		if seen[ns+"/"+n] != 1 {
			t.Errorf("%s reached the plugin %d times, want once", n, seen[ns+"/"+n])
		}
	}
}

// TestSlowOutputReader: Faro's stdout is a pipe read at 100 lines a second
// while 2,000 updates arrive. Its informers keep counting events while the
// output is stalled, nothing is lost once the reader speeds up, and every
// object's updates come out once and in order.
func TestSlowOutputReader(t *testing.T) {
	ns := createNamespace(t, "slowout")
	cfg := configFile(t, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	names := createCMs(t, ns, 20)
	metricsAddr := freeAddr(t)
	cmd := exec.Command(faroBinary(t), "--config", cfg, "--kubeconfig", cluster.Kubeconfig, "--log-format", "json",
		"--health-probe-bind-address", "0", "--metrics-bind-address", metricsAddr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var (
		mu   sync.Mutex
		evs  []event
		fast = make(chan struct{})
	)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		tick := time.NewTicker(10 * time.Millisecond) // 100 lines a second
		defer tick.Stop()
		for sc.Scan() {
			var ev event
			if json.Unmarshal(sc.Bytes(), &ev) == nil && strings.HasPrefix(ev.Message, "CONFIG [") {
				mu.Lock()
				evs = append(evs, ev)
				mu.Unlock()
			}
			select {
			case <-fast:
			default:
				select {
				case <-tick.C:
				case <-fast:
				}
			}
		}
	}()
	waitLines := func(what string, cond func([]event) bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			ok := cond(evs)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nstderr:\n%s", what, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLines("20 initial ADDED", func(e []event) bool { return len(e) >= 20 })

	var writes writeLog
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Go(func() {
			for range 100 {
				writes.update(t, kube, ns, n)
			}
		})
	}
	wg.Wait()
	// All 2,000 updates came through the informers while the output lags.
	deadline := time.Now().Add(time.Minute)
	var counted float64
	for counted < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("the informers saw %v of 2000 updates while the output was slow\nstderr:\n%s", counted, stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
		counted = metricValue(metricsAddr, `faro_events_total{resource="v1/configmaps",type="UPDATED"}`)
	}
	mu.Lock()
	lagging := len(evs) < 20+2000
	mu.Unlock()
	if !lagging {
		t.Fatal("the output kept up at 100 lines a second: the test did not stall Faro")
	}
	close(fast)
	waitLines("2,000 updates", func(e []event) bool { return len(e) >= 20+2000 })
	mu.Lock()
	defer mu.Unlock()
	for _, n := range names {
		got := reported(evs, ns, n)
		if !slices.Equal(got, writes.of(n)) {
			t.Errorf("%s: updates reported %v, want each write once in order: %v", n, got, writes.of(n))
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
}
