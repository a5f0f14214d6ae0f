package rules

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/internal/object"
)

// loadSet compiles the config file at path (CEL with dynamic types).
func loadSet(tb testing.TB, path string) *Set {
	tb.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	celc := celpred.NewCompiler(celpred.Options{})
	set, err := Compile(cfg, Options{CEL: celc})
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

func loadObject(tb testing.TB, file string) *unstructured.Unstructured {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(data, &u.Object); err != nil {
		tb.Fatal(err)
	}
	return u
}

// compact is u as the engine caches it.
func compact(tb testing.TB, u *unstructured.Unstructured) *object.Object {
	tb.Helper()
	o, err := object.FromUnstructured(u)
	if err != nil {
		tb.Fatal(err)
	}
	return o
}

// matchIDs returns the IDs of the rules on resource that select ev.
func matchIDs(t *testing.T, set *Set, resource string, ev *Event) []string {
	t.Helper()
	var ids []string
	for _, r := range set.Rules {
		if r.Resource.String() != resource {
			continue
		}
		ok, err := r.Matches(context.Background(), ev)
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			t.Errorf("%s: unexpected error %v", r.ID, err)
		}
		if ok {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

func TestMatches(t *testing.T) {
	set := loadSet(t, filepath.Join("testdata", "rules.yaml"))
	base := loadObject(t, "deployment.json")
	with := func(f func(u *unstructured.Unstructured)) *object.Object {
		u := base.DeepCopy()
		f(u)
		return compact(t, u)
	}
	baseObj := compact(t, base)
	nsPrefix := `namespaces[0].resources["apps/v1/deployments"]`
	tests := []struct {
		name string
		ev   Event
		want []string
	}{
		{"added in prod with labels", Event{Type: config.Added, Object: baseObj},
			[]string{nsPrefix, "resources[3]", "resources[5]"}},
		{"initial add skips initial_events:false", Event{Type: config.Added, Object: baseObj, Initial: true},
			[]string{nsPrefix, "resources[5]"}},
		{"deleted", Event{Type: config.Deleted, Object: baseObj},
			[]string{nsPrefix, "resources[2]", "resources[3]", "resources[5]"}},
		{"staging namespace", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) { u.SetNamespace("staging-1") })},
			[]string{"resources[0]", "resources[3]", "resources[5]"}},
		{"namespace regex is anchored", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) { u.SetNamespace("preprod-eu") })},
			[]string{"resources[3]", "resources[5]"}},
		{"exact name", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) { u.SetName("web"); u.SetNamespace("x") })},
			[]string{"resources[1]", "resources[3]", "resources[5]"}},
		{"label selector not met", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{"env": "production", "team": "c"}) })},
			[]string{"resources[3]", "resources[5]"}},
		{"no team label", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) { u.SetLabels(nil) })},
			[]string{"resources[3]", "resources[4]", "resources[5]"}},
		{"cel false", Event{Type: config.Added, Object: with(func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, int64(1), "spec", "replicas")
		})}, []string{nsPrefix, "resources[3]"}},
		{"spec change", Event{Type: config.Updated, OldObject: baseObj, Object: with(func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, int64(5), "spec", "replicas")
		})}, []string{nsPrefix, "resources[3]", "resources[5]", "resources[6]"}},
		{"status-only change", Event{Type: config.Updated, OldObject: baseObj, Object: with(func(u *unstructured.Unstructured) {
			_ = unstructured.SetNestedField(u.Object, int64(2), "status", "readyReplicas")
		})}, []string{nsPrefix, "resources[3]", "resources[5]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev
			got := matchIDs(t, set, "apps/v1/deployments", &ev)
			if !slices.Equal(got, tt.want) {
				t.Errorf("matched %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchesNamespaceObjectsByTheirName(t *testing.T) {
	set := loadSet(t, filepath.Join("testdata", "rules.yaml"))
	for name, want := range map[string]bool{"prod-1": true, "dev-1": false} {
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
		got := matchIDs(t, set, "v1/namespaces", &Event{Type: config.Added, Object: compact(t, ns), IsNamespace: true})
		if (len(got) == 1) != want {
			t.Errorf("namespace %s matched %v, want match=%v", name, got, want)
		}
	}
}

func TestCELEvaluationErrorIsNoMatch(t *testing.T) {
	set := loadSet(t, filepath.Join("testdata", "rules.yaml"))
	r := set.Rules[slices.IndexFunc(set.Rules, func(r *Rule) bool { return r.ID == "resources[7]" })]
	ok, err := r.Matches(context.Background(), &Event{Type: config.Added, Object: compact(t, loadObject(t, "deployment.json"))})
	if ok || err == nil || !strings.Contains(err.Error(), "resources[7]: CEL:") {
		t.Errorf("Matches = %v, %v; want false with a CEL error naming the rule", ok, err)
	}
}

func TestCompileReportsCELErrorsWithPlace(t *testing.T) {
	cfg, err := config.Parse([]byte(`
resources:
  - gvr: v1/configmaps
    cel: "objet.data.x == 'y'"
  - gvr: v1/configmaps
    cel: ["object.data.x == 'y'", "object.metadata.name"]
`), "bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	celc := celpred.NewCompiler(celpred.Options{})
	_, err = Compile(cfg, Options{CEL: celc})
	var errs config.Errors
	if !errorsAs(err, &errs) || len(errs) != 2 {
		t.Fatalf("Compile error = %v, want two config errors", err)
	}
	for _, want := range []string{
		"bad.yaml:4: resources[0].cel[0]: ERROR: <input>:1:1: undeclared reference to 'objet'",
		"bad.yaml:6: resources[1].cel[1]:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func errorsAs(err error, target *config.Errors) bool {
	e, ok := err.(config.Errors)
	if ok {
		*target = e
	}
	return ok
}

// BenchmarkMatchPath measures the regex + label path over a realistic
// object, with no CEL.
func BenchmarkMatchPath(b *testing.B) {
	set := loadSet(b, filepath.Join("testdata", "rules.yaml"))
	ev := &Event{Type: config.Added, Object: compact(b, loadObject(b, "deployment.json"))}
	r := set.Rules[0] // namespace regex + name regex + two-term selector
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := r.Matches(context.Background(), ev); !ok {
			b.Fatal("no match")
		}
	}
}

// TestCompileReusesUnchangedEntries: with Previous, an entry whose
// definition did not change is carried over as compiled; a changed one is
// compiled anew.
func TestCompileReusesUnchangedEntries(t *testing.T) {
	celc := celpred.NewCompiler(celpred.Options{})
	compile := func(pattern string, prev *Set) *Set {
		cfg, err := config.Parse([]byte(`
resources:
  - {gvr: v1/configmaps, cel: "object.data.x == 'y'"}
  - {gvr: v1/configmaps, name_pattern: "`+pattern+`"}
`), "r.yaml")
		if err != nil {
			t.Fatal(err)
		}
		set, err := Compile(cfg, Options{CEL: celc, Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	first := compile("a-.*", nil)
	second := compile("b-.*", first)
	if second.Rules[0] != first.Rules[0] {
		t.Error("unchanged entry was compiled again")
	}
	if second.Rules[1] == first.Rules[1] || second.Rules[1].NamePattern != "b-.*" {
		t.Error("changed entry was not compiled anew")
	}
}
