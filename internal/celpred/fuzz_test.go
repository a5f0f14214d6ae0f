package celpred

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// FuzzCompile compiles a fuzzed expression and variable, dynamically typed
// or against the Deployment schema, and evaluates what compiles on the
// Deployment fixtures and on an object that breaks the schema. Every issue
// is at one of the paths Compile documents; the Predicate is nil exactly
// when there are issues; evaluation returns a result or an error; and an
// expression Eval would run untracked (its cost bound within the limit)
// never goes over the limit when run tracked.
func FuzzCompile(f *testing.F) {
	for _, tp := range typicalPredicates {
		for _, typed := range []bool{false, true} {
			v := Variable{Name: "v", Expression: "1"}
			if len(tp.src.Variables) > 0 {
				v = tp.src.Variables[0]
			}
			f.Add(tp.src.Expressions[0], v.Name, v.Expression, typed)
		}
	}
	f.Add("object.spec.template.spec.containers.all(c, c.image.matches('^[a-z.]+/.*$'))", "x", "object.spec.replicas", true)
	f.Add("variables.n > 1 && object.metadata.name.find('[a-z]+') == 'web'", "n", "size(object.metadata.labels)", false)
	f.Add("object.(", "1b", "", true)
	f.Add("changedPaths.all(p, changedPaths.exists(q, p == q))", "n", "oldObject.spec", true)

	// A low run-time limit, so that an unsound cost bound shows on the small
	// fixtures; no compile-time limit, so that costly expressions compile.
	c := NewCompiler(Options{CostLimit: 2000, MaxEstimatedCost: 1 << 50})
	schema := deploymentSchema(f)
	old, updated := fixtures(f)
	inputs := []*Input{
		NewInput("UPDATED", updated, old),
		NewInput("ADDED", map[string]any{"spec": map[string]any{"replicas": "three", "template": []any{int64(1)}}, "metadata": "m"}, nil),
	}
	f.Fuzz(func(t *testing.T, expr, varName, varExpr string, typed bool) {
		var s *spec.Schema
		if typed {
			s = schema
		}
		src := Source{Expressions: []string{expr}}
		if varName != "" || varExpr != "" {
			src.Variables = []Variable{{Name: varName, Expression: varExpr}}
		}
		const path = `namespaces[0].resources["apps/v1/deployments"]`
		p, issues := c.Compile(path, src, s)
		if (p == nil) != (len(issues) > 0) {
			t.Fatalf("Predicate %v with issues %v", p, issues)
		}
		for _, is := range issues {
			switch is.Path {
			case path + ".cel[0]", path + ".variables[0].name", path + ".variables[0].expression":
			default:
				t.Errorf("issue at %q: %s", is.Path, is.Message)
			}
			if strings.TrimSpace(is.Message) == "" {
				t.Errorf("issue at %q without a message", is.Path)
			}
		}
		if p == nil {
			return
		}
		for _, in := range inputs {
			if _, err := p.Eval(context.Background(), in); err != nil && err.Error() == "" {
				t.Error("evaluation error without a message")
			}
			if len(p.vars) == 0 {
				checkUntrackedWithinLimit(t, c, p, in)
			}
		}
	})
}

// checkUntrackedWithinLimit runs tracked every expression Eval would run
// untracked on in: the cost bound that allowed it must hold.
func checkUntrackedWithinLimit(t *testing.T, c *Compiler, p *Predicate, in *Input) {
	t.Helper()
	fits := in.fitsModel()
	if fits && p.usesChangedPaths {
		_, fits = in.changedPaths()
	}
	for i, e := range p.exprs {
		if e.untracked == nil || !(e.always || fits) {
			continue
		}
		_, det, err := e.tracked.Eval((*inputActivation)(in))
		if err != nil && strings.Contains(err.Error(), "cost limit exceeded") {
			cost := "unknown"
			if det != nil && det.ActualCost() != nil {
				cost = fmt.Sprint(*det.ActualCost())
			}
			t.Errorf("cel[%d] runs untracked (always=%v, fits=%v) but costs %s, over the limit %d", i, e.always, fits, cost, c.opts.CostLimit)
		}
	}
}
