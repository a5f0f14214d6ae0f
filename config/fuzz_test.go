package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/rules"
)

// FuzzParse feeds Parse arbitrary files, seeded with the testdata configs
// (both formats) and testdata/fuzz/FuzzParse. A failure is config.Errors
// whose every entry says where (a line or a path) and why; a success
// normalizes to rules that package rules compiles, whose only possible
// problems are in the entries' CEL.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	celc := celpred.NewCompiler(celpred.Options{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse(data, "faro.yaml")
		if err != nil {
			checkErrors(t, err, data)
			return
		}
		checkRules(t, cfg)
		if _, err := rules.Compile(cfg, rules.Options{CEL: celc}); err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("rules.Compile error is %T, not config.Errors: %v", err, err)
			}
			for _, e := range errs {
				if !strings.Contains(e.Path, ".cel") && !strings.Contains(e.Path, ".variables[") {
					t.Errorf("a parsed config fails to compile outside CEL: %v\n%s", e, data)
				}
			}
		}
	})
}

// checkErrors asserts that a Parse error is config.Errors, each entry with
// a message and a place: a line, or a path (a line of its own for an empty
// file, which has no line to point at).
func checkErrors(t *testing.T, err error, data []byte) {
	t.Helper()
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, not config.Errors: %v", err, err)
	}
	if len(errs) == 0 {
		t.Fatal("empty config.Errors")
	}
	for _, e := range errs {
		if e.File != "faro.yaml" || strings.TrimSpace(e.Msg) == "" {
			t.Errorf("error without file or message: %#v", e)
		}
		if e.Line <= 0 && e.Path == "" && !strings.HasPrefix(e.Msg, "config is empty") {
			t.Errorf("error without a line or a path: %#v\n%s", e, data)
		}
	}
}

// checkRules asserts that the normalized rules are what rules.Compile
// expects: an ID, a resource that round-trips through its spelling, a
// non-empty set of distinct event types, compiling patterns and selector.
func checkRules(t *testing.T, cfg *config.Config) {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range cfg.Rules {
		if r.ID == "" || ids[r.ID] {
			t.Errorf("rule ID %q empty or repeated", r.ID)
		}
		ids[r.ID] = true
		if ref, err := config.ParseResourceRef(r.Resource.String()); err != nil || ref != r.Resource {
			t.Errorf("%s: resource %+v spelled %q parses back as %+v, %v", r.ID, r.Resource, r.Resource.String(), ref, err)
		}
		if len(r.EventTypes) == 0 {
			t.Errorf("%s: no event types", r.ID)
		}
		for i, et := range r.EventTypes {
			if !slices.Contains(config.AllEventTypes, et) || slices.Contains(r.EventTypes[:i], et) {
				t.Errorf("%s: event types %v", r.ID, r.EventTypes)
			}
		}
		for _, p := range append(slices.Clone(r.NamespacePatterns), r.NamePattern) {
			if _, err := config.CompilePattern(p); err != nil {
				t.Errorf("%s: pattern %q: %v", r.ID, p, err)
			}
		}
		if _, err := labels.Parse(r.LabelSelector); err != nil {
			t.Errorf("%s: selector %q: %v", r.ID, r.LabelSelector, err)
		}
		if r.Scope != "" && r.Scope != config.ScopeNamespaced && r.Scope != config.ScopeCluster {
			t.Errorf("%s: scope %q", r.ID, r.Scope)
		}
	}
}
