package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/faro-dev/faro/internal/daemon"
	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// rewrite replaces the config file and waits until the daemon logged one
// more reload with the given outcome ("config reloaded" or "config reload
// refused").
func (f *faro) rewrite(cfg, outcome string) {
	f.t.Helper()
	before := f.countDiag(outcome)
	if err := os.WriteFile(f.cfgPath, []byte(cfg), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.waitReloads(outcome, before+1)
}

func (f *faro) waitReloads(outcome string, n int) {
	f.t.Helper()
	f.waitFor(waitTime, fmt.Sprintf("%d × %q", n, outcome), func(_ []event, diag []string) bool { return countLines(diag, outcome) >= n })
}

const reloaded, refused = `"config reloaded"`, `"config reload refused;`

// TestReloadAddEntry: an entry added while running reports its events; the
// unchanged entry keeps working with no second round of initial events,
// even though its informer had to be replaced by a wider one.
func TestReloadAddEntry(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-add")
	createCM(t, ns, "a-0", nil)
	createCM(t, ns, "b-0", nil)
	entryA := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: \"a-.*\"\n", ns)
	f := startFaro(t, entryA)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/a-0"), waitTime)

	// Entry B's namespace is a regex: the per-namespace informer of entry A
	// is replaced by one for all namespaces.
	f.rewrite(entryA+fmt.Sprintf("  - gvr: v1/configmaps\n    namespace_patterns: [\"%s.*\"]\n    name_pattern: \"b-.*\"\n", ns), reloaded)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/b-0"), waitTime)
	createCM(t, ns, "a-1", nil)
	createCM(t, ns, "b-1", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/a-1"), waitTime)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/b-1"), waitTime)

	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/a-0"), 1)
	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/b-0"), 1)
	for _, e := range f.snapshot() {
		if e.Name == "b-0" && (!e.Initial || e.Rule != "resources[1]") {
			t.Errorf("b-0 should be an initial event of the new entry: %s", e)
		}
	}
	if n := f.countDiag(reloaded, `"added":["resources[1]"]`, "informers_started", "informers_stopped"); n != 1 {
		t.Errorf("reload line does not say what changed (found %d)", n)
	}
}

// TestReloadRemoveEntry: a removed entry's events stop and its informer
// stops.
func TestReloadRemoveEntry(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-rm")
	cms := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
	secrets := fmt.Sprintf("  - gvr: v1/secrets\n    namespace_patterns: [%q]\n", ns)
	f := startFaro(t, cms+secrets)
	mkSecret := func(name string) {
		if _, err := kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkSecret("s-before")
	f.waitEvent(msg("ADDED", "v1/secrets", ns+"/s-before"), waitTime)

	f.rewrite(cms, reloaded)
	f.waitDiag(waitTime, `"informer stopped"`, `"watch":"v1/secrets in `+ns+` (metadata only)"`)
	if n := f.countDiag(reloaded, `"removed":["resources[1]"]`, `"informers_stopped":["v1/secrets in `+ns+` (metadata only)"]`); n != 1 {
		t.Errorf("reload line does not report the removed entry and stopped informer")
	}
	mkSecret("s-after")
	f.settle(func() { createCM(t, ns, "marker", nil) }, msg("ADDED", "v1/configmaps", ns+"/marker"))
	assertNone(t, f, msg("ADDED", "v1/secrets", ns+"/s-after"))
}

// TestReloadChangeRegexAndCEL: after a reload the next events follow the new
// regex and the new CEL expression.
func TestReloadChangeRegexAndCEL(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-chg")
	rule := func(pattern, value string) string {
		return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: %q\n    cel: \"object.data.v == '%s'\"\n", ns, pattern, value)
	}
	mk := func(name, v string) {
		if _, err := kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": v}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f := startFaro(t, rule("x-.*", "1"))
	mk("x-1", "1")
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/x-1"), waitTime)

	f.rewrite(rule("y-.*", "2"), reloaded)
	mk("x-2", "1") // old regex and old CEL: must not match now
	mk("y-1", "1") // new regex, old CEL value
	mk("y-2", "2") // new regex and new CEL
	f.settle(func() {}, msg("ADDED", "v1/configmaps", ns+"/y-2"))
	f.settle(func() { mk("y-3", "2") }, msg("ADDED", "v1/configmaps", ns+"/y-3"))
	assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/x-2"), msg("ADDED", "v1/configmaps", ns+"/y-1"))
	if n := f.countDiag(reloaded, `"changed":["resources[0]"]`); n != 1 {
		t.Errorf("reload line does not report the changed entry")
	}
}

// TestReloadAddsARuleThatReadsBodies: a resource whose only rule reads
// metadata is cached without bodies. Rules with CEL added while Faro runs
// get their initial events and then every update with whole objects
// (object and oldObject), once a watch that caches bodies has replaced the
// metadata-only one; the first rule sees nothing twice.
func TestReloadAddsARuleThatReadsBodies(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-bodies")
	set := func(name, v string) {
		t.Helper()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": v}}
		if _, err := kube.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err == nil {
			return
		}
		cur, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Data = cm.Data
		if _, err := kube.CoreV1().ConfigMaps(ns).Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	set("one", "1")
	set("two", "2")
	names := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
	f := startFaro(t, names)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/one"), waitTime)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/two"), waitTime)
	f.waitDiag(waitTime, `"informer started"`, `"watch":"v1/configmaps in `+ns+` (metadata only)"`)

	f.rewrite(names+fmt.Sprintf(`  - gvr: v1/configmaps
    namespace_patterns: [%q]
    cel: "object.data.v == '1'"
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    event_types: [UPDATED]
    cel: "oldObject.data.v == '2' && object.data.v == '3'"
`, ns, ns), reloaded)
	f.waitFor(waitTime, "the CEL rule's initial ADDED of one", func(evs []event, _ []string) bool {
		return slices.ContainsFunc(evs, func(e event) bool { return e.Name == "one" && e.Rule == "resources[1]" })
	})
	f.waitDiag(waitTime, `"informer stopped"`, `"watch":"v1/configmaps in `+ns+` (metadata only)"`)
	set("two", "3")
	set("one", "4")
	f.settle(func() { set("marker", "0") }, msg("ADDED", "v1/configmaps", ns+"/marker"))

	got := map[string]int{}
	for _, e := range f.snapshot() {
		got[fmt.Sprintf("%s %s %s initial=%v", e.Type, e.Name, e.Rule, e.Initial)]++
	}
	want := map[string]int{
		"ADDED one resources[0] initial=true":     1,
		"ADDED two resources[0] initial=true":     1,
		"ADDED one resources[1] initial=true":     1, // from the cache, whole
		"UPDATED two resources[0] initial=false":  1,
		"UPDATED two resources[2] initial=false":  1, // oldObject whole too
		"UPDATED one resources[0] initial=false":  1,
		"ADDED marker resources[0] initial=false": 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("events by rule:\n%v\nwant\n%v\n%s", got, want, joinEvents(f.snapshot()))
	}
}

// TestReloadBrokenThenFixed: broken edits are refused with their place and
// the old rules keep running; deleting the file keeps them too; a fixed
// edit is then picked up.
func TestReloadBrokenThenFixed(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-bad")
	good := func(pattern string) string {
		return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: %q\n", ns, pattern)
	}
	f := startFaro(t, good("old-.*"))
	broken := []struct{ cfg, place string }{
		{"resources:\n  - gvr: v1/configmaps\n     name_pattern: x\n", "faro.yaml:3"},                                            // YAML error
		{good("new-.*") + "    name_patern: x\n", `resources[0].name_patern: unknown key`},                                       // unknown key
		{good("new-("), `resources[0].name_pattern: invalid regular expression`},                                                 // bad regex
		{good("new-.*") + "    cel: \"object.data.v ==\"\n", `resources[0].cel[0]: ERROR: \u003cinput\u003e:1:17: Syntax error`}, // bad CEL
		{good("new-.*") + "    plugins: [nope]\n", `resources[0].plugins[0]: unknown plugin \"nope\"`},                           // unknown plugin
	}
	for i, b := range broken {
		f.rewrite(b.cfg, refused)
		if n := f.countDiag(refused, b.place); n != 1 {
			t.Errorf("broken edit %d: refusal does not name %q", i, b.place)
		}
		name := fmt.Sprintf("old-%d", i)
		createCM(t, ns, name, nil)
		f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/"+name), waitTime)
	}
	if err := os.Remove(f.cfgPath); err != nil {
		t.Fatal(err)
	}
	f.waitDiag(waitTime, "config file is gone")
	createCM(t, ns, "old-gone", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/old-gone"), waitTime)

	f.rewrite(good("new-.*"), reloaded)
	createCM(t, ns, "old-after", nil)
	f.settle(func() { createCM(t, ns, "new-1", nil) }, msg("ADDED", "v1/configmaps", ns+"/new-1"))
	assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/old-after"))
	if !f.running() {
		t.Fatal("faro exited on a bad edit")
	}
}

// TestReloadRenameAndSymlinkSwap: an editor's write-to-temp-then-rename and
// a ConfigMap volume's ..data symlink swap are both seen.
func TestReloadRenameAndSymlinkSwap(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-swap")
	rule := func(pattern string) string {
		return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: %q\n", ns, pattern)
	}

	t.Run("rename", func(t *testing.T) {
		f := startFaro(t, rule("r1-.*"))
		tmp := f.cfgPath + ".swp"
		if err := os.WriteFile(tmp, []byte(rule("r2-.*")), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.cfgPath); err != nil {
			t.Fatal(err)
		}
		f.waitReloads(reloaded, 1)
		createCM(t, ns, "r1-x", nil)
		f.settle(func() { createCM(t, ns, "r2-x", nil) }, msg("ADDED", "v1/configmaps", ns+"/r2-x"))
		assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/r1-x"))
	})

	t.Run("symlink swap", func(t *testing.T) {
		// The layout of a ConfigMap volume: faro.yaml -> ..data/faro.yaml,
		// ..data -> ..v1; an update writes ..v2 and renames a new ..data
		// link over the old one.
		dir := t.TempDir()
		writeVersion := func(v, cfg string) {
			if err := os.Mkdir(filepath.Join(dir, v), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, v, "faro.yaml"), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		writeVersion("..v1", rule("s1-.*"))
		if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "faro.yaml")
		if err := os.Symlink(filepath.Join("..data", "faro.yaml"), path); err != nil {
			t.Fatal(err)
		}
		f := startFaro(t, "", func(o *daemon.Options) { o.ConfigPath = path })
		writeVersion("..v2", rule("s2-.*"))
		if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		f.waitReloads(reloaded, 1)
		createCM(t, ns, "s1-x", nil)
		f.settle(func() { createCM(t, ns, "s2-x", nil) }, msg("ADDED", "v1/configmaps", ns+"/s2-x"))
		assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/s1-x"))
	})
}

// TestReloadUnderLoad: a steady stream of updates to one object during ten
// reloads: no event lost or duplicated, and in order.
func TestReloadUnderLoad(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-load")
	rule := func(i int) string {
		return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: \"hot\"\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: \"cold-%d\"\n", ns, ns, i)
	}
	f := startFaro(t, rule(0))
	createCM(t, ns, "hot", nil)
	const updates = 100
	stop := make(chan struct{})
	writerDone := make(chan []string)
	go func() {
		var rvs []string
		defer func() { writerDone <- rvs }()
		for i := 1; i <= updates; i++ {
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "hot", metav1.GetOptions{})
			if err == nil {
				cm.Data = map[string]string{"v": strconv.Itoa(i)}
				cm, err = kube.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Error(err)
				return
			}
			rvs = append(rvs, cm.ResourceVersion)
			select {
			case <-stop:
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	for i := 1; i <= 10; i++ {
		f.rewrite(rule(i), reloaded)
	}
	close(stop)
	rvs := <-writerDone
	if len(rvs) != updates {
		t.Fatalf("writer made %d updates, want %d", len(rvs), updates)
	}
	// One more update after the reloads: once it is logged, every earlier
	// event of the object has been processed (per-object order).
	rvs = append(rvs, updateCM(t, ns, "hot", "last").ResourceVersion)
	updated := msg("UPDATED", "v1/configmaps", ns+"/hot")
	f.waitFor(waitTime, "the last update", func(evs []event, _ []string) bool {
		return len(evs) > 0 && evs[len(evs)-1].Message == updated && evs[len(evs)-1].ResourceVersion == rvs[len(rvs)-1] || countMsg(evs, updated) > len(rvs)
	})
	var got []string
	for _, e := range f.snapshot() {
		if e.Message == updated {
			got = append(got, e.ResourceVersion)
		}
	}
	if strings.Join(got, ",") != strings.Join(rvs, ",") {
		t.Fatalf("UPDATED events across 10 reloads (lost, duplicated or reordered):\n got %d: %v\nwant %d: %v", len(got), got, len(rvs), rvs)
	}
}

// TestReloadPluginReplaced: a plugin file replaced by a new build (written
// beside it, then renamed over it) is compiled and swapped in; the next
// event shows its new behaviour.
func TestReloadPluginReplaced(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-plugin")
	dir := t.TempDir()
	for _, v := range []string{"version1", "version2"} {
		if err := wasmtest.Build(t.Context(), filepath.Join("testdata", "plugins", v), filepath.Join(dir, v+".wasm")); err != nil {
			t.Fatal(err)
		}
	}
	plugin := filepath.Join(dir, "plugins", "swap.wasm")
	if err := os.Mkdir(filepath.Dir(plugin), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dir, "version1.wasm"), plugin)
	f := startFaro(t, fmt.Sprintf("plugins:\n  - name: swap\n    path: %s\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    plugins: [swap]\n", plugin, ns))
	versionOf := func(key string) string {
		for _, r := range f.records("swap") {
			var rec struct {
				Version int    `json:"version"`
				Key     string `json:"key"`
			}
			if json.Unmarshal(r.Record, &rec) == nil && rec.Key == key {
				return strconv.Itoa(rec.Version)
			}
		}
		return ""
	}
	createCM(t, ns, "first", nil)
	f.waitFor(waitTime, "version 1 record", func([]event, []string) bool { return len(recordsOf(f.raw, "swap")) > 0 })
	if v := versionOf(ns + "/first"); v != "1" {
		t.Fatalf("first event handled by version %q, want 1", v)
	}

	before := f.countDiag(reloaded)
	copyFile(t, filepath.Join(dir, "version2.wasm"), plugin+".tmp")
	if err := os.Rename(plugin+".tmp", plugin); err != nil {
		t.Fatal(err)
	}
	f.waitReloads(reloaded, before+1)
	if n := f.countDiag(reloaded, `"plugins_reloaded":["swap"]`); n != 1 {
		t.Errorf("reload line does not name the rebuilt plugin")
	}
	createCM(t, ns, "second", nil)
	f.waitFor(waitTime, "version 2 record", func([]event, []string) bool { return len(recordsOf(f.raw, "swap")) > 1 })
	if v := versionOf(ns + "/second"); v != "2" {
		t.Fatalf("event after the swap handled by version %q, want 2", v)
	}

	// A config naming a plugin file that does not exist yet is refused;
	// creating the file is enough for the next reload.
	later := filepath.Join(dir, "plugins", "later.wasm")
	f.rewrite(fmt.Sprintf("plugins:\n  - name: swap\n    path: %s\nresources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    plugins: [swap]\n", later, ns), refused)
	if n := f.countDiag(refused, "plugins[0].path: cannot read plugin"); n != 1 {
		t.Errorf("refusal does not name the missing plugin file")
	}
	before = f.countDiag(reloaded)
	copyFile(t, filepath.Join(dir, "version1.wasm"), later)
	f.waitReloads(reloaded, before+1)
	createCM(t, ns, "third", nil)
	f.waitFor(waitTime, "a record for third", func([]event, []string) bool { return len(recordsOf(f.raw, "swap")) > 2 })
	if v := versionOf(ns + "/third"); v != "1" {
		t.Fatalf("event after the fix handled by version %q, want 1", v)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadReplacedWatchUnderLoad: reloads that replace the informers (the
// second entry alternates between literal namespaces and a regex, which
// splits one informer for all namespaces into one per namespace and merges
// them back) while one object is
// updated and others are created and deleted. The unchanged entry gets every
// event exactly once, in order, and no second initial event: the old
// informer keeps delivering until the new one takes over.
func TestReloadReplacedWatchUnderLoad(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-swapwatch")
	other := createNamespace(t, "reload-swapwatch-other")
	// Even: every namespace literal, one informer per namespace; odd: a
	// regex, one informer for all. Each reload splits or merges informers.
	rule := func(i int) string {
		second := fmt.Sprintf("[%q, %q]", ns, other)
		if i%2 == 1 {
			second = fmt.Sprintf("[\"%s.*\"]", ns)
		}
		return fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n    name_pattern: \"hot|tmp-.*\"\n  - gvr: v1/configmaps\n    namespace_patterns: %s\n    name_pattern: \"cold\"\n", ns, second)
	}
	createCM(t, ns, "hot", nil)
	f := startFaro(t, rule(0))
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/hot"), waitTime)
	stop := make(chan struct{})
	writerDone := make(chan []string)
	go func() {
		var rvs []string
		defer func() { writerDone <- rvs }()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			cm, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "hot", metav1.GetOptions{})
			if err == nil {
				cm.Data = map[string]string{"v": strconv.Itoa(i)}
				cm, err = kube.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
			}
			if err == nil && i%10 == 0 {
				_, err = kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("tmp-%d", i)}}, metav1.CreateOptions{})
				if err == nil && i > 10 {
					err = kube.CoreV1().ConfigMaps(ns).Delete(t.Context(), fmt.Sprintf("tmp-%d", i-10), metav1.DeleteOptions{})
				}
			}
			if err != nil {
				t.Error(err)
				return
			}
			rvs = append(rvs, cm.ResourceVersion)
		}
	}()
	for i := 1; i <= 10; i++ {
		f.rewrite(rule(i), reloaded)
		f.waitSynced()
	}
	close(stop)
	rvs := <-writerDone
	last := updateCM(t, ns, "hot", "last").ResourceVersion
	updated := msg("UPDATED", "v1/configmaps", ns+"/hot")
	f.waitFor(waitTime, "the last update", func(evs []event, _ []string) bool {
		for _, e := range evs {
			if e.Message == updated && e.ResourceVersion == last {
				return true
			}
		}
		return false
	})
	if n := f.countDiag(`"informer stopped"`); n < 10 {
		t.Fatalf("only %d informers stopped: the reloads did not replace the watch", n)
	}
	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/hot"), 1)
	var got []string
	for _, e := range f.snapshot() {
		if e.Message == updated {
			got = append(got, e.ResourceVersion)
		}
	}
	want := append(rvs, last)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("UPDATED events across 10 watch replacements (lost, duplicated or reordered):\n got %d: %v\nwant %d: %v", len(got), got, len(want), want)
	}
	// Every tmp object: one ADDED, and a DELETED for those deleted.
	created := map[string]int{}
	deleted := map[string]int{}
	for _, e := range f.snapshot() {
		if strings.HasPrefix(e.Name, "tmp-") {
			switch e.Type {
			case "ADDED":
				created[e.Name]++
			case "DELETED":
				deleted[e.Name]++
			}
		}
	}
	for i := 10; i <= len(rvs); i += 10 {
		name := fmt.Sprintf("tmp-%d", i)
		if created[name] != 1 {
			t.Errorf("%s: %d ADDED events, want 1", name, created[name])
		}
		if i+10 <= len(rvs) && deleted[name] != 1 {
			t.Errorf("%s: %d DELETED events, want 1", name, deleted[name])
		}
	}
}

// TestReloadSettings: log_level and auto_shutdown_sec apply on reload;
// workers cannot change while running and the daemon says so.
func TestReloadSettings(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "reload-settings")
	entry := fmt.Sprintf("resources:\n  - gvr: v1/configmaps\n    namespace_patterns: [%q]\n", ns)
	f := startFaro(t, "log_level: info\n"+entry, func(o *daemon.Options) { o.LogLevel = "" })
	f.rewrite("log_level: info\nworkers: 7\n"+entry, reloaded)
	if n := f.countDiag("workers changed in the config; it applies after a restart"); n != 1 {
		t.Errorf("no restart-needed warning for workers")
	}
	if n := f.countDiag(`"@level":"debug"`); n != 0 {
		t.Errorf("%d debug lines at log_level info", n)
	}
	f.rewrite("log_level: debug\nworkers: 7\n"+entry, reloaded)
	f.waitDiag(waitTime, `"@level":"debug"`)
	f.rewrite("log_level: debug\nworkers: 7\nauto_shutdown_sec: 1\n"+entry, reloaded)
	f.waitDiag(waitTime, "auto-shutdown: time is up")
	f.waitFor(waitTime, "daemon exit", func([]event, []string) bool { return !f.running() })
}
