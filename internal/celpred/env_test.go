package celpred

import (
	"slices"
	"sort"
	"testing"

	"github.com/google/cel-go/cel"

	"k8s.io/apiserver/pkg/cel/environment"
)

// TestBaseEnvMatchesKubernetes guards newBaseEnv against drift from the
// apiserver's base environment (StoredExpressions, the most permissive): same
// libraries, functions with the same overloads, macros and validators.
func TestBaseEnvMatchesKubernetes(t *testing.T) {
	ours, err := newBaseEnv()
	if err != nil {
		t.Fatal(err)
	}
	k8s := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).StoredExpressionsEnv()

	libs := func(e *cel.Env) []string { l := e.Libraries(); sort.Strings(l); return l }
	if a, b := libs(ours), libs(k8s); !slices.Equal(a, b) {
		t.Errorf("libraries differ:\n ours %v\n k8s  %v", a, b)
	}

	overloads := func(e *cel.Env) map[string][]string {
		m := map[string][]string{}
		for name, fn := range e.Functions() {
			var ids []string
			for _, o := range fn.OverloadDecls() {
				ids = append(ids, o.ID())
			}
			sort.Strings(ids)
			m[name] = ids
		}
		return m
	}
	a, b := overloads(ours), overloads(k8s)
	for name, ids := range b {
		if !slices.Equal(a[name], ids) {
			t.Errorf("function %s: overloads ours %v, k8s %v", name, a[name], ids)
		}
	}
	for name := range a {
		if _, ok := b[name]; !ok {
			t.Errorf("function %s is not in the Kubernetes environment", name)
		}
	}

	macros := func(e *cel.Env) []string {
		var l []string
		for _, m := range e.Macros() {
			l = append(l, m.MacroKey())
		}
		sort.Strings(l)
		return l
	}
	if a, b := macros(ours), macros(k8s); !slices.Equal(a, b) {
		t.Errorf("macros differ:\n ours %v\n k8s  %v", a, b)
	}
	validators := func(e *cel.Env) []string {
		var l []string
		for _, v := range e.Validators() {
			l = append(l, v.Name())
		}
		sort.Strings(l)
		return l
	}
	if a, b := validators(ours), validators(k8s); !slices.Equal(a, b) {
		t.Errorf("validators differ:\n ours %v\n k8s  %v", a, b)
	}

	// A sample of language features that are options rather than functions.
	for _, expr := range []string{
		"[1, 2.0].size() == 2 || true",                            // heterogeneous literal: rejected by both
		"1 < 2.0",                                                 // cross-type numeric comparison
		"optional.of(1).orValue(2) == 1",                          // optional types
		"duration('1h') > duration('1m')",                         // duration literal validation
		"timestamp('2025-01-01T00:00:00Z').getFullYear() == 2025", // UTC default
		"'a.b'.split('.').size() == 2",                            // strings v2
		"[1, 2].all(i, v, v > i)",                                 // two-variable comprehensions
		"'abc'.matches('[')",                                      // regex literal validation: rejected by both
	} {
		_, i1 := ours.Compile(expr)
		_, i2 := k8s.Compile(expr)
		if (i1.Err() == nil) != (i2.Err() == nil) {
			t.Errorf("%s: ours %v, k8s %v", expr, i1.Err(), i2.Err())
		}
	}
}
