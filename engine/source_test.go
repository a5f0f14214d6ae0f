package engine

import (
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/rules"
)

func compileRules(t testing.TB, yaml string) []*rules.Rule {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	celc := celpred.NewCompiler(celpred.Options{})
	set, err := rules.Compile(cfg, rules.Options{CEL: celc})
	if err != nil {
		t.Fatal(err)
	}
	return set.Rules
}

func TestWatchesFor(t *testing.T) {
	tests := []struct {
		name       string
		namespaced bool
		keepBodies bool
		yaml       string
		want       []string
	}{
		{"literal namespaces narrow the watch", true, false, `
resources:
  - {gvr: v1/configmaps, namespace_patterns: [a, b]}
  - {gvr: v1/configmaps, namespace_patterns: [b, c]}
`, []string{"v1/configmaps in a (metadata only)", "v1/configmaps in b (metadata only)", "v1/configmaps in c (metadata only)"}},
		{"one regex widens to all namespaces", true, false, `
resources:
  - {gvr: v1/configmaps, namespace_patterns: [a]}
  - {gvr: v1/configmaps, namespace_patterns: ["prod-.*"]}
`, []string{"v1/configmaps (metadata only)"}},
		{"no namespace pattern means all", true, false, `
resources:
  - {gvr: v1/configmaps, namespace_patterns: [a]}
  - {gvr: v1/configmaps}
`, []string{"v1/configmaps (metadata only)"}},
		{"one shared selector goes to the server", true, false, `
resources:
  - {gvr: v1/configmaps, label_selector: "team=a", name_pattern: x}
  - {gvr: v1/configmaps, label_selector: "team=a", name_pattern: y}
`, []string{"v1/configmaps where team=a (metadata only)"}},
		{"different selectors filter client-side on one informer", true, false, `
resources:
  - {gvr: v1/configmaps, label_selector: "team=a"}
  - {gvr: v1/configmaps, label_selector: "team=b"}
`, []string{"v1/configmaps (metadata only)"}},
		{"cluster-scoped ignores namespaces", false, false, `
namespaces:
  - name_pattern: a
    resources:
      v1/namespaces: {}
`, []string{"v1/namespaces (metadata only)"}},
		{"one rule with CEL caches bodies for all", true, false, `
resources:
  - {gvr: v1/configmaps, namespace_patterns: [a]}
  - {gvr: v1/configmaps, namespace_patterns: [a], cel: "has(object.data)"}
`, []string{"v1/configmaps in a"}},
		{"a rule with plugins caches bodies", true, false, `
plugins:
  - {name: p, path: p.wasm}
resources:
  - {gvr: v1/configmaps, plugins: [p]}
`, []string{"v1/configmaps"}},
		{"a checkpoint keeps bodies", true, true, `
resources:
  - {gvr: v1/configmaps}
`, []string{"v1/configmaps"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := compileRules(t, tt.yaml)
			r := rs[0].Resource
			gvr := schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
			var got []string
			for _, k := range watchesFor(gvr, tt.namespaced, rs, tt.keepBodies) {
				got = append(got, k.String())
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("watches = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	idx := &resourceIndex{
		byGVR:     map[schema.GroupVersionResource]apiResource{},
		preferred: map[string]string{"": "v1", "apps": "v1", "example.com": "v2", "other.io": "v1"},
	}
	for _, g := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Group: "example.com", Version: "v1", Resource: "widgets"},
		{Group: "example.com", Version: "v2", Resource: "widgets"},
		{Group: "other.io", Version: "v1", Resource: "widgets"},
		{Group: "other.io", Version: "v1", Resource: "configmaps"},
	} {
		idx.byGVR[g] = apiResource{GVR: g}
	}
	tests := []struct{ in, want, err string }{
		{in: "v1/configmaps", want: "v1/configmaps"},
		{in: "configmaps", want: "v1/configmaps"}, // core wins a bare name
		{in: "deployments.apps", want: "apps/v1/deployments"},
		{in: "widgets.example.com", want: "example.com/v2/widgets"},    // preferred version
		{in: "example.com/v1/widgets", want: "example.com/v1/widgets"}, // multi-version: as configured
		{in: "widgets", err: "ambiguous"},
		{in: "apps/v2/deployments", err: "not served"},
		{in: "gadgets", err: "not served"},
	}
	for _, tt := range tests {
		ref, err := config.ParseResourceRef(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := idx.resolve(ref)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%s) error = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || gvrString(got.GVR) != tt.want {
			t.Errorf("resolve(%s) = %s, %v; want %s", tt.in, gvrString(got.GVR), err, tt.want)
		}
	}
}

func TestKeepFailedGroups(t *testing.T) {
	widgets := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	cms := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	prev := &resourceIndex{
		byGVR:     map[schema.GroupVersionResource]apiResource{widgets: {GVR: widgets}, cms: {GVR: cms}},
		preferred: map[string]string{"": "v1", "example.com": "v1"},
	}
	idx := &resourceIndex{byGVR: map[schema.GroupVersionResource]apiResource{cms: {GVR: cms}}, preferred: map[string]string{"": "v1"}}
	idx.keepFailedGroups(prev, &discovery.ErrGroupDiscoveryFailed{Groups: map[schema.GroupVersion]error{widgets.GroupVersion(): errors.New("503")}})
	ref, _ := config.ParseResourceRef("widgets.example.com")
	if r, err := idx.resolve(ref); err != nil || r.GVR != widgets {
		t.Errorf("failed group's resource not kept: %v %v", r, err)
	}
	// A group that is simply gone (no failure) is not resurrected.
	idx2 := &resourceIndex{byGVR: map[schema.GroupVersionResource]apiResource{cms: {GVR: cms}}, preferred: map[string]string{"": "v1"}}
	idx2.keepFailedGroups(prev, nil)
	if _, err := idx2.resolve(ref); err == nil {
		t.Error("a removed group was kept")
	}
}

func TestStripManagedFields(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetName("a")
	u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}})
	out, err := stripManagedFields(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(out.(*unstructured.Unstructured).Object, "metadata", "managedFields"); found {
		t.Error("managedFields kept")
	}
	if out.(*unstructured.Unstructured).GetName() != "a" {
		t.Error("object damaged")
	}
}
