package rules

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/faro-dev/faro/config"
)

// FuzzMatch compiles an entry from fuzzed namespace and name patterns and
// label selector and matches it against a fuzzed object. A bad pattern or
// selector is a config error at the entry's path; a compiled entry matches
// exactly when a reference model says so: a pattern must match the whole
// name (leftmost-longest match spanning it), a literal pattern (the watch
// is narrowed to it) only itself, and the selector sees the object's labels
// as labels.Set does.
func FuzzMatch(f *testing.F) {
	f.Add("prod-.*", "app-.*", "env=prod,tier!=db", "prod-eu", "app-web", false, "env", "prod", "tier", "web")
	f.Add("", "", "", "", "n", true, "", "", "", "")
	f.Add("kube-system", "coredns", "k8s-app in (kube-dns)", "kube-system", "coredns", false, "k8s-app", "kube-dns", "a", "b")
	f.Add("a|b", "(?i)WEB", "!env", "", "b", true, "env", "x", "app.kubernetes.io/name", "web")
	f.Add("(", "[z-a]", "env==(prod", "ns", "n", false, "k", "v", "k2", "v2")
	f.Add("ns$|x", `\Aweb`, "app notin (a,b),x>1", "ns", "web", false, "x", "2", "app", "c")
	f.Fuzz(func(t *testing.T, nsPattern, namePattern, selector, namespace, name string, isNamespace bool, k1, v1, k2, v2 string) {
		r := config.Rule{
			ID:            "resources[0]",
			Resource:      config.ResourceRef{Version: "v1", Resource: "configmaps"},
			NamePattern:   namePattern,
			LabelSelector: selector,
			EventTypes:    config.AllEventTypes,
			InitialEvents: true,
		}
		if nsPattern != "" {
			r.NamespacePatterns = []string{nsPattern}
		}
		cfg := &config.Config{Path: "faro.yaml", Rules: []config.Rule{r}}
		set, err := Compile(cfg, Options{})
		_, nsErr := config.CompilePattern(nsPattern)
		_, nameErr := config.CompilePattern(namePattern)
		_, selErr := labels.Parse(selector)
		if (err != nil) != (nsErr != nil || nameErr != nil || selErr != nil) {
			t.Fatalf("Compile error %v, but patterns %v, %v and selector %v", err, nsErr, nameErr, selErr)
		}
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Compile error is %T, not config.Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != "faro.yaml" || !strings.HasPrefix(e.Path, r.ID) || e.Msg == "" {
					t.Errorf("error without its place: %#v", e)
				}
			}
			return
		}

		lbls := map[string]any{}
		want := labels.Set{}
		for _, kv := range [][2]string{{k1, v1}, {k2, v2}} {
			if kv[0] != "" {
				lbls[kv[0]], want[kv[0]] = kv[1], kv[1]
			}
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": namespace, "labels": lbls},
		}}
		ns := namespace
		if ns == "" && isNamespace {
			ns = name
		}
		sel, _ := labels.Parse(selector)
		wantMatch := (ns == "" || nsPattern == "" || fullMatch(nsPattern, ns)) &&
			(namePattern == "" || fullMatch(namePattern, name)) &&
			sel.Matches(want)
		got, err := set.Rules[0].Matches(context.Background(), &Event{Type: config.Added, Object: compact(t, obj), IsNamespace: isNamespace})
		if err != nil || got != wantMatch {
			t.Fatalf("Matches = %v, %v; want %v (namespace %q, name %q, labels %v)", got, err, wantMatch, ns, name, want)
		}

		// Object names are UTF-8; the regexp package reads invalid bytes as U+FFFD.
		if config.IsLiteralPattern(namePattern) && utf8.ValidString(name) {
			re, _ := config.CompilePattern(namePattern)
			if !re.MatchString(namePattern) || re.MatchString(name) != (name == namePattern) {
				t.Fatalf("literal pattern %q matches %q: %v", namePattern, name, re.MatchString(name))
			}
		}
	})
}

// fullMatch reports whether pattern p matches all of s, without the
// anchoring CompilePattern uses: the leftmost-longest match spans s exactly
// when some match does.
func fullMatch(p, s string) bool {
	re := regexp.MustCompile(p)
	re.Longest()
	loc := re.FindStringIndex(s)
	return loc != nil && loc[0] == 0 && loc[1] == len(s)
}
