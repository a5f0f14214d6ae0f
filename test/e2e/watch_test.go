package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const waitTime = 30 * time.Second

func createCM(t *testing.T, ns, name string, labels map[string]string) *corev1.ConfigMap {
	t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Data:       map[string]string{"v": "0"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create configmap %s/%s: %v", ns, name, err)
	}
	return cm
}

// createCMs creates n ConfigMaps cm-00, cm-01, … in ns and returns their
// names.
func createCMs(t *testing.T, ns string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cm-%02d", i)
		createCM(t, ns, names[i], nil)
	}
	return names
}

func updateCM(t *testing.T, ns, name, value string) *corev1.ConfigMap {
	t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"v": value}
	cm, err = kube.CoreV1().ConfigMaps(ns).Update(t.Context(), cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update configmap %s/%s: %v", ns, name, err)
	}
	return cm
}

func deleteCM(t *testing.T, ns, name string) {
	t.Helper()
	if err := kube.CoreV1().ConfigMaps(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete configmap %s/%s: %v", ns, name, err)
	}
}

func msg(typ, gvr, key string) string { return fmt.Sprintf("CONFIG [%s] %s %s", typ, gvr, key) }

// assertNone fails if any logged event has one of these messages.
func assertNone(t *testing.T, f *faro, msgs ...string) {
	t.Helper()
	for _, e := range f.snapshot() {
		if slices.Contains(msgs, e.Message) {
			t.Errorf("unexpected event: %s", e)
		}
	}
}

// assertCount fails unless msg was logged exactly n times.
func assertCount(t *testing.T, f *faro, m string, n int) {
	t.Helper()
	if got := countMsg(f.snapshot(), m); got != n {
		t.Errorf("%q logged %d times, want %d\n%s", m, got, n, joinEvents(f.snapshot()))
	}
}

// TestConfigMapLifecycle covers the add/update/delete flow of one ConfigMap
// selected by exact name, in both config formats.
func TestConfigMapLifecycle(t *testing.T) {
	tests := []struct {
		name, rule string
		config     func(ns string) string
	}{
		{"namespace-centric", `namespaces[0].resources["v1/configmaps"]`, func(ns string) string {
			return fmt.Sprintf(`
namespaces:
  - name_pattern: %q
    resources:
      v1/configmaps:
        name_pattern: app-config
`, ns)
		}},
		{"resource-centric", "resources[0]", func(ns string) string {
			return fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    scope: Namespaced
    namespace_patterns: [%q]
    name_pattern: app-config
`, ns)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := createNamespace(t, "lifecycle")
			f := startFaro(t, tt.config(ns))
			key := ns + "/app-config"
			cm := createCM(t, ns, "app-config", nil)
			createCM(t, ns, "app-config-2", nil) // the pattern must match the whole name
			createCM(t, ns, "my-app-config", nil)
			f.waitEvent(msg("ADDED", "v1/configmaps", key), waitTime)
			upd := updateCM(t, ns, "app-config", "1")
			f.waitEvent(msg("UPDATED", "v1/configmaps", key), waitTime)
			deleteCM(t, ns, "app-config")
			f.waitEvent(msg("DELETED", "v1/configmaps", key), waitTime)

			assertCount(t, f, msg("ADDED", "v1/configmaps", key), 1)
			assertCount(t, f, msg("UPDATED", "v1/configmaps", key), 1)
			assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/app-config-2"), msg("ADDED", "v1/configmaps", ns+"/my-app-config"))
			for _, e := range f.snapshot() {
				if e.Rule != tt.rule || e.UID != string(cm.UID) || e.Namespace != ns || e.Name != "app-config" || e.GVR != "v1/configmaps" {
					t.Errorf("event fields wrong: %+v (want rule %s uid %s)", e, tt.rule, cm.UID)
				}
				if e.Type == "UPDATED" && e.ResourceVersion != upd.ResourceVersion {
					t.Errorf("UPDATED resource_version = %s, want %s", e.ResourceVersion, upd.ResourceVersion)
				}
				if e.Initial {
					t.Errorf("event for an object created after start marked initial: %s", e)
				}
			}
		})
	}
}

// TestSelectorsAndPatterns covers label selectors with namespace regexes and
// name patterns with label selectors.
func TestSelectorsAndPatterns(t *testing.T) {
	t.Parallel()
	prod := createNamespace(t, "sel-prod")
	other := createNamespace(t, "sel-other")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    namespace_patterns: ["sel-prod-.*"]
    label_selector: "env=production"
  - gvr: v1/configmaps
    namespace_patterns: ["%s"]
    name_pattern: "app-.*"
    label_selector: "tier in (web, api)"
`, other))
	createCM(t, prod, "prod-match", map[string]string{"env": "production"})
	createCM(t, prod, "prod-nolabel", map[string]string{"env": "staging"})
	createCM(t, other, "other-label", map[string]string{"env": "production"}) // wrong namespace for rule 0
	createCM(t, other, "app-web", map[string]string{"tier": "web"})
	createCM(t, other, "app-db", map[string]string{"tier": "db"})
	createCM(t, other, "web-app", map[string]string{"tier": "web"})
	f.waitEvent(msg("ADDED", "v1/configmaps", prod+"/prod-match"), waitTime)
	f.waitEvent(msg("ADDED", "v1/configmaps", other+"/app-web"), waitTime)
	f.settle(func() { createCM(t, other, "app-api", map[string]string{"tier": "api"}) }, msg("ADDED", "v1/configmaps", other+"/app-api"))
	assertNone(t, f,
		msg("ADDED", "v1/configmaps", prod+"/prod-nolabel"),
		msg("ADDED", "v1/configmaps", other+"/other-label"),
		msg("ADDED", "v1/configmaps", other+"/app-db"),
		msg("ADDED", "v1/configmaps", other+"/web-app"))
	assertCount(t, f, msg("ADDED", "v1/configmaps", prod+"/prod-match"), 1)
}

// TestClusterScopedNamespaces watches v1/namespaces being added and deleted.
func TestClusterScopedNamespaces(t *testing.T) {
	t.Parallel()
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/namespaces
    scope: Cluster
    name_pattern: "faro-ns-%s-.*"
`, suffix))
	name := "faro-ns-" + suffix + "-a"
	if _, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitEvent(msg("ADDED", "v1/namespaces", name), waitTime)
	deleteNamespace(t, name)
	f.waitEvent(msg("DELETED", "v1/namespaces", name), waitTime)
	// Deletion goes through Terminating (an UPDATED) before DELETED.
	assertCount(t, f, msg("ADDED", "v1/namespaces", name), 1)
	assertCount(t, f, msg("DELETED", "v1/namespaces", name), 1)
	for _, e := range f.snapshot() {
		if e.Namespace != "" || e.GVR != "v1/namespaces" {
			t.Errorf("cluster-scoped event has namespace/gvr %q/%q: %s", e.Namespace, e.GVR, e)
		}
		if !strings.HasPrefix(e.Name, "faro-ns-"+suffix) {
			t.Errorf("event for a namespace outside the pattern: %s", e)
		}
	}
}

// TestBothFormatsInOneFile: one file, one entry of each format; each entry
// reports its own objects, and an object matched by both is logged once per
// entry.
func TestBothFormatsInOneFile(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "both")
	f := startFaro(t, fmt.Sprintf(`
namespaces:
  - name_pattern: %q
    resources:
      v1/configmaps:
        name_pattern: "ns-.*|shared"
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    name_pattern: "res-.*|shared"
`, ns, ns))
	createCM(t, ns, "ns-one", nil)
	createCM(t, ns, "res-one", nil)
	createCM(t, ns, "shared", nil)
	createCM(t, ns, "neither", nil)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/ns-one"), waitTime)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/res-one"), waitTime)
	f.waitFor(waitTime, "shared logged twice", func(evs []event, _ []string) bool {
		return countMsg(evs, msg("ADDED", "v1/configmaps", ns+"/shared")) == 2
	})
	f.settle(func() { createCM(t, ns, "ns-marker", nil) }, msg("ADDED", "v1/configmaps", ns+"/ns-marker"))
	rules := map[string]string{}
	for _, e := range f.snapshot() {
		rules[e.Name] += e.Rule + ";"
	}
	if rules["ns-one"] != `namespaces[0].resources["v1/configmaps"];` || rules["res-one"] != "resources[0];" {
		t.Errorf("rules per object = %v", rules)
	}
	if r := rules["shared"]; !strings.Contains(r, "resources[0];") || !strings.Contains(r, `namespaces[0]`) {
		t.Errorf("shared matched by %q, want both entries", r)
	}
	assertNone(t, f, msg("ADDED", "v1/configmaps", ns+"/neither"))
	if w := f.countDiag("informer started", `"watch":"v1/configmaps`); w != 1 {
		t.Errorf("informers started for v1/configmaps = %d, want 1 (shared)", w)
	}
}

// TestTwoSelectorsOneInformer: two entries on one resource with different
// selectors share one informer, and each sees exactly its own objects.
func TestTwoSelectorsOneInformer(t *testing.T) {
	t.Parallel()
	ns := createNamespace(t, "selectors")
	f := startFaro(t, fmt.Sprintf(`
resources:
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    label_selector: team=a
  - gvr: v1/configmaps
    namespace_patterns: [%q]
    label_selector: team=b
`, ns, ns))
	createCM(t, ns, "for-a", map[string]string{"team": "a"})
	createCM(t, ns, "for-b", map[string]string{"team": "b"})
	createCM(t, ns, "for-c", map[string]string{"team": "c"})
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/for-a"), waitTime)
	f.waitEvent(msg("ADDED", "v1/configmaps", ns+"/for-b"), waitTime)
	f.settle(func() { createCM(t, ns, "marker", map[string]string{"team": "a"}) }, msg("ADDED", "v1/configmaps", ns+"/marker"))
	for _, e := range f.snapshot() {
		want := map[string]string{"for-a": "resources[0]", "marker": "resources[0]", "for-b": "resources[1]"}[e.Name]
		if e.Rule != want {
			t.Errorf("%s matched by %s, want %q", e.Name, e.Rule, want)
		}
	}
	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/for-a"), 1)
	assertCount(t, f, msg("ADDED", "v1/configmaps", ns+"/for-b"), 1)
	if w := f.countDiag("informer started", `"watch":"v1/configmaps`); w != 1 {
		t.Errorf("informers started for v1/configmaps = %d, want 1", w)
	}
}
