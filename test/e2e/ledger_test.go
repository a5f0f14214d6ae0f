package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/faro-dev/faro/internal/daemon"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// eventsOf returns the CONFIG events of one object, as "TYPE uid".
func eventsOf(evs []event, ns, name string) []string {
	var out []string
	for _, e := range evs {
		if e.Namespace == ns && e.Name == name {
			out = append(out, e.Type+" "+e.UID)
		}
	}
	return out
}

// TestRecreateDuringOutage: an object deleted and re-created under the same
// name while Faro's API server is away is reported as what happened: its
// deletion, then the new object, never an update.
func TestRecreateDuringOutage(t *testing.T) {
	ns := createNamespace(t, "recreate")
	f := startFaro(t, fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	first := createCM(t, ns, "x", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/x"), waitTime)

	var second *corev1.ConfigMap
	duringOutage(t, func(kube2 kubernetes.Interface) {
		if err := kube2.CoreV1().ConfigMaps(ns).Delete(t.Context(), "x", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var err error
		if second, err = kube2.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	f.waitFor(90*time.Second, "the new object", func(evs []event, _ []string) bool {
		return slices.Contains(eventsOf(evs, ns, "x"), "ADDED "+string(second.UID))
	})
	f.settle(func() { createCM(t, ns, "marker", nil) }, msg("ADDED", "v1/configmaps", ns+"/marker"))
	want := []string{"ADDED " + string(first.UID), "DELETED " + string(first.UID), "ADDED " + string(second.UID)}
	if got := eventsOf(f.snapshot(), ns, "x"); !slices.Equal(got, want) {
		t.Errorf("events of x = %v, want %v", got, want)
	}
}

// TestWatchReplacedBeforeItListed: reloads that widen and narrow a
// resource's watches in quick succession, each replacing a replacement that
// may not have listed yet, under a stream of updates: the rule that stays
// sees every update once, in order.
func TestWatchReplacedBeforeItListed(t *testing.T) {
	ns := createNamespace(t, "replace-twice")
	other := createNamespace(t, "replace-twice-other")
	stays := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: hot\n", ns)
	configs := []string{
		stays,
		stays + "  - gvr: v1/configmaps\n    namespace_patterns: [\"replace-twice-.*\"]\n",   // all namespaces
		stays + fmt.Sprintf("  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", other), // two namespaces
	}
	f := startFaro(t, stays)
	createCM(t, ns, "hot", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/hot"), waitTime)

	var rvs []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 150 {
			rvs = append(rvs, updateCM(t, ns, "hot", fmt.Sprint(i+1)).ResourceVersion)
			time.Sleep(15 * time.Millisecond)
		}
	}()
	for _, c := range []int{1, 2, 1, 0, 2, 0, 1, 2, 1, 0} {
		// The next edit follows at once: the previous replacement may not
		// have listed yet.
		f.rewrite(configs[c], reloaded)
	}
	<-done
	rvs = append(rvs, updateCM(t, ns, "hot", "final").ResourceVersion)
	last := rvs[len(rvs)-1]
	f.waitFor(waitTime, "the last update", func(evs []event, _ []string) bool {
		return slices.ContainsFunc(evs, func(e event) bool { return e.Name == "hot" && e.ResourceVersion == last })
	})
	var got []string
	for _, e := range f.snapshot() {
		if e.Name == "hot" && e.Rule == "resources[0]" && e.Type == "UPDATED" {
			got = append(got, e.ResourceVersion)
		}
	}
	if !slices.Equal(got, rvs) {
		t.Fatalf("UPDATED events of the rule that stays (lost, duplicated or reordered):\n got %d: %v\nwant %d: %v", len(got), got, len(rvs), rvs)
	}
}

// TestReplacementForbiddenFromListing: when the wider watch a reload asks
// for is forbidden (RBAC), the old watch keeps serving its scope, with a
// warning, and Faro keeps running.
func TestReplacementForbiddenFromListing(t *testing.T) {
	ns := createNamespace(t, "forbidden")
	restricted := serviceAccountConfig(t, ns, rbacv1.PolicyRule{
		APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"},
	})
	narrow := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
	f := startFaro(t, narrow, func(o *daemon.Options) { o.RestConfig = restricted })
	createCM(t, ns, "a", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/a"), waitTime)

	f.rewrite(narrow+"  - gvr: v1/configmaps\n    namespace_patterns: [\"forbidden-elsewhere-.*\"]\n", reloaded)
	f.waitDiag(90*time.Second, "watch failing", "v1/configmaps", "forbidden")
	updateCM(t, ns, "a", "1")
	createCM(t, ns, "b", nil)
	deleteCM(t, ns, "a")
	f.settle(func() { createCM(t, ns, "marker", nil) }, msg("ADDED", "v1/configmaps", ns+"/marker"))
	for _, m := range []string{msg("UPDATED", "v1/configmaps", ns+"/a"), msg("ADDED", "v1/configmaps", ns+"/b"), msg("DELETED", "v1/configmaps", ns+"/a")} {
		assertCount(t, f, m, 1)
	}
	if !f.running() {
		t.Fatal("faro stopped")
	}
}

// serviceAccountConfig creates a ServiceAccount in ns allowed rule there
// (and nothing else but what every authenticated user may do), and returns a
// client config carrying its token.
func serviceAccountConfig(t *testing.T, ns string, rule rbacv1.PolicyRule) *rest.Config {
	t.Helper()
	ctx := t.Context()
	sa, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "faro"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "faro"}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "faro"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "faro"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(cluster.Config)
	cfg.BearerToken = tok.Status.Token
	return cfg
}

// faroProcess is the faro binary running on a config with --log-format
// json, its events collected.
type faroProcess struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	events  []event
	records []pluginRecord
	stderr  syncBuffer
	exited  chan error
}

func startProcess(t *testing.T, cfg string, args ...string) *faroProcess {
	t.Helper()
	p := &faroProcess{exited: make(chan error, 1)}
	p.cmd = exec.Command(faroBinary(t), slices.Concat([]string{"--config", cfg, "--kubeconfig", cluster.Kubeconfig, "--log-format", "json", "--workers", "1"}, noServing, args)...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev event
			if json.Unmarshal(sc.Bytes(), &ev) == nil && strings.HasPrefix(ev.Message, "CONFIG [") {
				p.mu.Lock()
				p.events = append(p.events, ev)
				p.mu.Unlock()
			} else if r, ok := parseRecord(sc.Text()); ok {
				p.mu.Lock()
				p.records = append(p.records, r)
				p.mu.Unlock()
			}
		}
		p.exited <- p.cmd.Wait()
	}()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// waitExit waits at most d for the process to exit 0 (after a SIGTERM).
func (p *faroProcess) waitExit(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("faro exited with %v:\n%s", err, p.stderr.String())
		}
	case <-time.After(d):
		t.Fatalf("faro still running %v after SIGTERM:\n%s", d, p.stderr.String())
	}
}

func (p *faroProcess) snapshot() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *faroProcess) waitFor(t *testing.T, what string, cond func([]event) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTime)
	for !cond(p.snapshot()) {
		select {
		case err := <-p.exited:
			t.Fatalf("faro exited (%v) waiting for %s:\n%s", err, what, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s\nevents: %v\nstderr:\n%s", what, p.snapshot(), p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasMsg(m string) func([]event) bool {
	return func(evs []event) bool { return countMsg(evs, m) > 0 }
}

// TestResumeAfterKill: Faro killed with SIGKILL and restarted on the same
// state_dir reports exactly what changed while it was down (updates,
// deletions, creations, a re-create) and nothing of the objects that did not
// change, while an entry added to the config meanwhile is told of the
// objects it selects; a torn ledger file is refused with a message naming
// it.
func TestResumeAfterKill(t *testing.T) {
	ns := createNamespace(t, "resume")
	cfg := configFile(t, fmt.Sprintf("state_dir: state\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns))
	names := createCMs(t, ns, 20)
	p := startProcess(t, cfg)
	p.waitFor(t, "20 initial ADDED", func(evs []event) bool { return len(evs) == 20 })
	createCM(t, ns, "marker-1", nil)
	p.waitFor(t, "a live ADDED", hasMsg(msg("ADDED", "v1/configmaps", ns+"/marker-1")))
	// Marks are committed every 100ms: give the last ones time to reach
	// the disk (what is in flight at a kill is delivered again).
	time.Sleep(time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	for _, n := range names[:3] {
		updateCM(t, ns, n, "changed")
	}
	for _, n := range names[3:5] {
		deleteCM(t, ns, n)
	}
	createCM(t, ns, "new-1", nil)
	createCM(t, ns, "new-2", nil)
	old, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), names[5], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleteCM(t, ns, names[5])
	again := createCM(t, ns, names[5], nil)
	// An entry added to the config while Faro was down: it is told of the
	// objects it selects (cm-00 in its last delivered state, then its
	// change).
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "state_dir: state\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n"+
		"  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: 'cm-(00|10|11)'\n", ns, ns), 0o600); err != nil {
		t.Fatal(err)
	}

	p = startProcess(t, cfg)
	p.waitFor(t, "the changes", func(evs []event) bool { return len(evs) >= 13 })
	createCM(t, ns, "marker-2", nil)
	p.waitFor(t, "the marker", hasMsg(msg("ADDED", "v1/configmaps", ns+"/marker-2")))
	got := map[string][]string{}
	var recreate []string
	for _, e := range p.snapshot() {
		if e.Name != "marker-2" {
			got[e.Rule] = append(got[e.Rule], fmt.Sprintf("%s %s initial=%v", e.Type, e.Name, e.Initial))
		}
		if e.Name == names[5] {
			recreate = append(recreate, e.Type)
			if e.Type == "DELETED" && e.UID != string(old.UID) || e.Type == "ADDED" && e.UID != string(again.UID) {
				t.Errorf("re-created object reported with the wrong uid: %v", e)
			}
		}
	}
	if !slices.Equal(recreate, []string{"DELETED", "ADDED"}) {
		t.Errorf("re-created object reported as %v, want DELETED then ADDED", recreate)
	}
	g := got["resources[1]"]
	if a, u := slices.Index(g, "ADDED cm-00 initial=true"), slices.Index(g, "UPDATED cm-00 initial=false"); a < 0 || u < a {
		t.Errorf("the new entry got %v: want its initial ADDED of cm-00 before cm-00's change", g)
	}
	for rule, want := range map[string][]string{
		"resources[0]": {
			"ADDED cm-05 initial=false", "ADDED new-1 initial=false", "ADDED new-2 initial=false",
			"DELETED cm-03 initial=false", "DELETED cm-04 initial=false", "DELETED cm-05 initial=false",
			"UPDATED cm-00 initial=false", "UPDATED cm-01 initial=false", "UPDATED cm-02 initial=false",
		},
		"resources[1]": {"ADDED cm-00 initial=true", "ADDED cm-10 initial=true", "ADDED cm-11 initial=true", "UPDATED cm-00 initial=false"},
	} {
		slices.Sort(got[rule])
		if !slices.Equal(got[rule], want) {
			t.Errorf("after the restart, %s:\n got %v\nwant %v", rule, got[rule], want)
		}
	}

	// A torn ledger is refused, naming the file; it is not reset.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitExit(t, 30*time.Second)
	ledger := filepath.Join(filepath.Dir(cfg), "state", "ledger.db")
	data, err := os.ReadFile(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ledger, data[:len(data)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(faroBinary(t), append([]string{"--config", cfg, "--kubeconfig", cluster.Kubeconfig}, noServing...)...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v on a torn ledger, want 1:\n%s", err, out)
	}
	if !strings.Contains(string(out), ledger) {
		t.Errorf("the refusal does not name %s:\n%s", ledger, out)
	}
}

// TestHotObjectBehindSlowPlugin: 5,000 updates of one object behind a
// plugin that takes 20ms per event: the object's backlog is compacted (its
// memory bounded by max_pending_per_object), other objects keep flowing, and
// the final state is delivered.
func TestHotObjectBehindSlowPlugin(t *testing.T) {
	ns := createNamespace(t, "hot")
	wasm := filepath.Join(t.TempDir(), "slow.wasm")
	if err := wasmtest.Build(t.Context(), filepath.Join("testdata", "plugins", "slow"), wasm); err != nil {
		t.Fatal(err)
	}
	f := startFaro(t, fmt.Sprintf(`max_pending_per_object: 50
plugins:
  - name: slow
    path: %s
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    plugins: [slow]
`, wasm, ns))
	createCM(t, ns, "hot", nil)
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1); i <= 5000; i = next.Add(1) {
				// Unconditional updates (no resource version), 8 at a time.
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hot", Namespace: ns}, Data: map[string]string{"v": fmt.Sprint(i)}}
				if _, err := kube.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
					t.Errorf("update %d: %v", i, err)
					return
				}
			}
		})
	}
	time.Sleep(2 * time.Second) // the backlog is building: another object must not wait behind it
	createCM(t, ns, "cold", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/cold"), waitTime)
	coldAt := len(f.snapshot())
	wg.Wait()
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "hot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := cm.ResourceVersion
	f.waitFor(2*time.Minute, "the final state", func(evs []event, _ []string) bool {
		return slices.ContainsFunc(evs, func(e event) bool { return e.Name == "hot" && e.ResourceVersion == last })
	})
	hot := 0
	for _, e := range f.snapshot() {
		if e.Name == "hot" && e.Type == "UPDATED" {
			hot++
		}
	}
	if hot >= 5000 {
		t.Errorf("all %d updates delivered one by one: the backlog was not compacted", hot)
	}
	if coldAt >= hot {
		t.Errorf("the cold object was reported after %d events, behind the hot object's whole backlog (%d)", coldAt, hot)
	}
	f.waitDiag(waitTime, "collapsing its UPDATEDs", "max_pending_per_object")
}

// TestShutdownWithEventInBackoff: an event whose plugin fails is backing
// off when Faro gets SIGTERM. Without state_dir it is delivered before
// Faro exits (within the drain timeout); with state_dir Faro exits without
// waiting and delivers it after the restart.
func TestShutdownWithEventInBackoff(t *testing.T) {
	var failing atomic.Bool
	var mu sync.Mutex
	var bodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	received := func(ns string) bool { // a request about ns/x
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(bodies, func(b string) bool { return strings.Contains(b, ns) })
	}
	dir := builtPlugins(t)
	config := func(ns, extra string) string {
		return fmt.Sprintf(`%s
max_retries: 50
plugins:
  - name: notify
    path: %s/notify.wasm
    config: {webhook_url: %q, events: [UPDATED]}
    allowed_hosts: [%q]
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    plugins: [notify]
`, extra, dir, hook.URL+"/hook", strings.TrimPrefix(hook.URL, "http://"), ns)
	}

	for _, withState := range []bool{false, true} {
		t.Run(fmt.Sprintf("state_dir=%v", withState), func(t *testing.T) {
			ns := createNamespace(t, "backoff")
			extra := ""
			if withState {
				extra = "state_dir: " + t.TempDir()
			}
			cfg := configFile(t, config(ns, extra))
			p := startProcess(t, cfg, "--log-level", "debug")
			createCM(t, ns, "x", nil)
			p.waitFor(t, "the ADDED", hasMsg(msg("ADDED", "v1/configmaps", ns+"/x")))
			failing.Store(true)
			updateCM(t, ns, "x", "1")
			p.waitFor(t, "the update's first failure", func([]event) bool {
				return countLines(strings.Split(p.stderr.String(), "\n"), "event failed; retrying", ns+"/x") > 0
			})
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if !withState {
				time.Sleep(300 * time.Millisecond) // stopping: the event is still backing off
				failing.Store(false)
				p.waitExit(t, 30*time.Second)
				if !received(ns) {
					t.Fatal("the event in backoff was not delivered before Faro exited")
				}
				return
			}
			// With state_dir it does not wait for the backoff (retries go
			// on for minutes at max_retries: 50).
			p.waitExit(t, 10*time.Second)
			failing.Store(false)
			if received(ns) {
				t.Fatal("delivered although the webhook failed until Faro stopped")
			}
			p2 := startProcess(t, cfg)
			p2.waitFor(t, "the UPDATED after the restart", hasMsg(msg("UPDATED", "v1/configmaps", ns+"/x")))
			deadline := time.Now().Add(waitTime)
			for !received(ns) {
				if time.Now().After(deadline) {
					t.Fatal("the event left in backoff was not delivered after the restart")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
