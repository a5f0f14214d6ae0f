// Command benche2e is what `make bench-e2e` runs: an end-to-end benchmark
// of the faro binary against the embedded test cluster (internal/testcluster),
// beside a plain client-go dynamic informer that only prints what it sees.
// It is not part of the watch pipeline; it measures it from outside.
//
// It creates N ConfigMaps of about 1 KB, then runs each contender as its own
// process, one after the other on the same objects: the time until the
// contender handled the N initial events, its peak RSS (VmHWM) and, for a
// series of updates of existing objects, its CPU time (utime+stime) per
// update. It prints one markdown table and the machine it ran on.
//
// The informer is its own command (./informer), so that its memory is an
// informer's alone; it and Faro are built alike, as the image builds Faro.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/faro-dev/faro/internal/testcluster"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// writers is how many goroutines create and update the objects.
const writers = 8

// waitTime bounds each wait for a contender; it is a guard against a hung
// run, not a measurement.
const waitTime = 10 * time.Minute

func main() {
	n := flag.Int("n", 10000, "ConfigMaps listed initially")
	updates := flag.Int("updates", 2000, "updates of existing ConfigMaps per contender (at most n)")
	faroBin := flag.String("faro", "", "faro binary (default: built from ./cmd/faro into a temporary folder, as the image builds it)")
	profiles := flag.String("heap-profiles", "", "folder to write each Faro contender's heap profile into, taken once it handled the initial events\n(Faro is then built with -tags pprof, which links the profiling code)")
	flag.Parse()
	if err := run(*n, min(*updates, *n), *faroBin, *profiles); err != nil {
		fmt.Fprintln(os.Stderr, "benche2e:", err)
		os.Exit(1)
	}
}

// contender is one process under measurement.
type contender struct {
	what string
	// args is the command line of a contender that is not Faro.
	args []string
	// config is Faro's config file; Faro runs on it when it is not "".
	config string
	// plugin names the plugin whose PLUGIN lines mark an update handled; ""
	// when the CONFIG lines do.
	plugin string
	// pprof is the address Faro serves its profiles on and profile the
	// file its heap profile goes to; both "" when none is taken.
	pprof, profile string
}

// build builds the command pkg into dir as the image builds Faro (static,
// without symbols; see the Makefile's image target), so that every
// contender's binary is built alike, and returns its path.
func build(dir, pkg string, flags ...string) (string, error) {
	out := filepath.Join(dir, filepath.Base(pkg))
	fmt.Fprintln(os.Stderr, "building", out, strings.Join(flags, " "))
	cmd := exec.Command("go", append(append([]string{"build", "-trimpath", "-ldflags=-s -w"}, flags...), "-o", out, pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return out, nil
}

// result is one row of the table.
type result struct {
	what      string
	initial   time.Duration
	peakRSS   int64 // bytes
	cpuPerUpd time.Duration
}

func run(n, updates int, faroBin, profiles string) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "faro-benche2e-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if profiles != "" {
		if err := os.MkdirAll(profiles, 0o755); err != nil {
			return err
		}
	}
	if faroBin == "" {
		var flags []string
		if profiles != "" {
			flags = []string{"-tags", "pprof"} // a binary that serves its profiles
		}
		if faroBin, err = build(tmp, "./cmd/faro", flags...); err != nil {
			return err
		}
	}
	informerBin, err := build(tmp, "./internal/benche2e/informer")
	if err != nil {
		return err
	}
	wasm := filepath.Join(tmp, "changelog.wasm")
	fmt.Fprintln(os.Stderr, "building", wasm)
	if err := wasmtest.Build(ctx, filepath.Join("plugins", "examples", "changelog"), wasm); err != nil {
		return err
	}

	fmt.Fprintln(os.Stderr, "starting the local cluster")
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		return err
	}
	defer c.Stop()
	// The writers are not throttled on the client side: the apiserver is
	// what bounds them.
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 10000, 10000
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	const ns = "bench"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "creating %d ConfigMaps of ~1 KB\n", n)
	if err := forEach(n, func(i int) error {
		_, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i), Labels: map[string]string{"app": "bench", "tier": "web"}},
			Data:       map[string]string{"payload": strings.Repeat("x", 900), "rev": "0"},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	contenders := []contender{
		{what: "plain dynamic informer, only prints", args: []string{informerBin, "-kubeconfig", c.Kubeconfig, "-namespace", ns}},
		{what: "Faro, 1 rule", config: oneRule(ns)},
		{what: "Faro, 1 rule with CEL (bodies cached)", config: oneRule(ns) + "    cel: \"has(object.data)\"\n"},
		{what: "Faro, 10 rules with CEL", config: tenRules(ns)},
		{what: "Faro, 1 rule + changelog plugin", config: pluginRule(ns, wasm), plugin: "changelog"},
	}
	var results []result
	for round, ct := range contenders {
		if ct.config != "" {
			path := filepath.Join(tmp, fmt.Sprintf("faro-%d.yaml", round))
			if err := os.WriteFile(path, []byte(ct.config), 0o644); err != nil {
				return err
			}
			ct.args = []string{faroBin, "--config", path, "--kubeconfig", c.Kubeconfig, "--log-format", "json",
				"--metrics-bind-address", "0", "--health-probe-bind-address", "0"}
			if profiles != "" {
				if ct.pprof, err = testcluster.FreeAddr(); err != nil {
					return err
				}
				ct.profile = filepath.Join(profiles, fmt.Sprintf("heap-%d-%d.pb.gz", n, round))
				ct.args = append(ct.args, "--pprof-bind-address", ct.pprof)
			}
		}
		fmt.Fprintln(os.Stderr, "running:", ct.what)
		r, err := measure(ctx, ct, n, updates, func() error {
			return forEach(updates, func(i int) error {
				patch := fmt.Sprintf(`{"data":{"rev":"%d"}}`, round+1)
				_, err := kube.CoreV1().ConfigMaps(ns).Patch(ctx, fmt.Sprintf("bench-%d", i), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				return err
			})
		})
		if err != nil {
			return fmt.Errorf("%s: %w", ct.what, err)
		}
		results = append(results, r)
	}
	printTable(os.Stdout, n, updates, results)
	return nil
}

// forEach calls f for 0..n-1 from writers goroutines and returns the first
// error.
func forEach(n int, f func(i int) error) error {
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if err := f(int(i)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func oneRule(ns string) string {
	return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
}

// tenRules has nine rules that are evaluated on every event and do not
// match (regexes, a label selector, CEL) and one CEL rule that matches, so
// that each event is logged once.
func tenRules(ns string) string {
	var sb strings.Builder
	sb.WriteString("resources:\n")
	for i := range 9 {
		fmt.Fprintf(&sb, "  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    label_selector: \"tier in (web, api)\"\n    cel: \"has(object.data) && object.data.?rev.orValue('') == 'never-%d'\"\n", ns, i)
	}
	fmt.Fprintf(&sb, "  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: \"bench-.*\"\n    cel: \"has(object.data) && object.data.size() > 1\"\n", ns)
	return sb.String()
}

func pluginRule(ns, wasm string) string {
	return fmt.Sprintf("plugins:\n  - name: changelog\n    path: %s\n    config: {fields: [data]}\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    plugins: [changelog]\n", wasm, ns)
}

// lines counts a contender's output lines as they arrive.
type lines struct {
	config, plugin atomic.Int64
}

// count reads out to its end, counting matched-event lines (CONFIG) and
// plugin record lines (PLUGIN), plain or JSON.
func (l *lines) count(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		msg := sc.Text()
		if strings.HasPrefix(msg, "{") {
			var m struct {
				Message string `json:"@message"`
			}
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			msg = m.Message
		}
		switch {
		case strings.HasPrefix(msg, "CONFIG ["):
			l.config.Add(1)
		case strings.HasPrefix(msg, "PLUGIN ["):
			l.plugin.Add(1)
		}
	}
}

// measure runs one contender: the time until it handled n initial events,
// its peak RSS then, and its CPU time over update() and until it handled
// those updates, per update.
func measure(ctx context.Context, ct contender, n, updates int, update func() error) (result, error) {
	r := result{what: ct.what}
	cmd := exec.Command(ct.args[0], ct.args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	var l lines
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() {
		l.count(out)
		exited <- cmd.Wait()
	}()
	defer cmd.Process.Kill()
	wait := func(what string, done func() bool) error {
		deadline := time.Now().Add(waitTime)
		for !done() {
			select {
			case err := <-exited:
				return fmt.Errorf("exited (%v) waiting for %s:\n%s", err, what, stderr.String())
			case <-time.After(5 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out waiting for %s:\n%s", what, stderr.String())
			}
		}
		return nil
	}
	if err := wait("the initial events", func() bool { return l.config.Load() >= int64(n) }); err != nil {
		return r, err
	}
	r.initial = time.Since(start)
	pid := cmd.Process.Pid
	if r.peakRSS, err = peakRSS(pid); err != nil {
		return r, err
	}
	if ct.profile != "" {
		if err := saveHeapProfile(ct.pprof, ct.profile); err != nil {
			return r, err
		}
		fmt.Fprintln(os.Stderr, "heap profile:", ct.profile)
	}

	time.Sleep(time.Second) // let the end of the initial list settle
	before, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	if err := update(); err != nil {
		return r, err
	}
	handled := func() bool { return l.config.Load() >= int64(n+updates) }
	if ct.plugin != "" {
		handled = func() bool { return l.config.Load() >= int64(n+updates) && l.plugin.Load() >= int64(updates) }
	}
	if err := wait("the updates", handled); err != nil {
		return r, err
	}
	after, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	r.cpuPerUpd = (after - before) / time.Duration(updates)

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
	}
	return r, ctx.Err()
}

// saveHeapProfile writes the heap profile Faro serves on addr to path.
func saveHeapProfile(addr, path string) error {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap")
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printTable(w io.Writer, n, updates int, results []result) {
	fmt.Fprintf(w, "\n%d ConfigMaps of ~1 KB listed initially; %d updates of existing ones\n\n", n, updates)
	fmt.Fprintln(w, "| what | initial list: time to handle all | peak RSS | RSS/object | CPU µs/update |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %.2f s | %.1f MiB | %.2f KiB | %.0f |\n", r.what, r.initial.Seconds(),
			float64(r.peakRSS)/(1<<20), float64(r.peakRSS)/1024/float64(n), float64(r.cpuPerUpd)/float64(time.Microsecond))
	}
	fmt.Fprintf(w, "\nmachine: %d CPUs, %s, %s %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
