package celpred

import (
	"strings"
	"testing"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

func issueStrings(issues []Issue) []string {
	var s []string
	for _, i := range issues {
		s = append(s, i.String())
	}
	return s
}

// TestCompileErrors checks the exact messages: the entry path, then
// cel-go's report with line:col, the source line and a caret.
func TestCompileErrors(t *testing.T) {
	c := NewCompiler(Options{})
	tests := []struct {
		name string
		path string
		src  Source
		want []string
	}{{
		name: "undeclared reference",
		path: "resources[1]",
		src:  Source{Expressions: []string{"object.data.tier == 'gold'", "has(objet.data)"}},
		want: []string{"resources[1].cel[1]: ERROR: <input>:1:5: undeclared reference to 'objet' (in container '')\n" +
			" | has(objet.data)\n" +
			" | ....^"},
	}, {
		name: "syntax error",
		path: `namespaces[0].resources["v1/configmaps"]`,
		src:  Source{Expressions: []string{"object.data.(tier"}},
		want: []string{`namespaces[0].resources["v1/configmaps"].cel[0]: ERROR: <input>:1:13: Syntax error: no viable alternative at input '.('` + "\n" +
			" | object.data.(tier\n" +
			" | ............^"},
	}, {
		name: "every problem at once, in order",
		path: "resources[0]",
		src: Source{
			Expressions: []string{"objet == null", "true", "'a'", "variables.nope"},
			Variables:   []Variable{{Name: "a", Expression: "object.("}, {Name: "1b", Expression: "1"}, {Name: "a", Expression: "2"}},
		},
		want: []string{
			"resources[0].variables[0].expression: ERROR: <input>:1:8: Syntax error: no viable alternative at input '.('\n | object.(\n | .......^",
			`resources[0].variables[1].name: "1b" is not a valid variable name (letters, digits and _, not starting with a digit)`,
			`resources[0].variables[2].name: duplicate variable name "a"`,
			"resources[0].cel[0]: ERROR: <input>:1:1: undeclared reference to 'objet' (in container '')\n | objet == null\n | ^",
			"resources[0].cel[2]: must evaluate to bool but has type string",
			"resources[0].cel[3]: ERROR: <input>:1:10: undefined field 'nope'\n | variables.nope\n | .........^",
		},
	}, {
		name: "not bool, dynamic",
		path: "resources[0]",
		src:  Source{Expressions: []string{"object.spec.enabled"}},
		want: []string{"resources[0].cel[0]: must evaluate to bool but has type dyn (its type is only known at run time: compare it, e.g. `... == true`, or convert it with bool(...))"},
	}, {
		name: "not bool, int",
		path: "resources[0]",
		src:  Source{Expressions: []string{"size(object.metadata.name)"}},
		want: []string{"resources[0].cel[0]: must evaluate to bool but has type int"},
	}, {
		name: "no expression",
		path: "resources[0]",
		src:  Source{},
		want: []string{"resources[0].cel: at least one expression is required"},
	}, {
		name: "blank expression",
		path: "resources[0]",
		src:  Source{Expressions: []string{"  "}},
		want: []string{"resources[0].cel[0]: empty expression"},
	}, {
		name: "variables only see earlier variables",
		path: "resources[0]",
		src: Source{
			Expressions: []string{"variables.a"},
			Variables:   []Variable{{Name: "a", Expression: "variables.b"}, {Name: "b", Expression: "true"}},
		},
		want: []string{"resources[0].variables[0].expression: ERROR: <input>:1:10: undefined field 'b'\n | variables.b\n | .........^"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, issues := c.Compile(tc.path, tc.src, nil)
			if p != nil {
				t.Errorf("got a predicate despite errors")
			}
			got := issueStrings(issues)
			if strings.Join(got, "\n---\n") != strings.Join(tc.want, "\n---\n") {
				t.Errorf("issues:\n%s\nwant:\n%s", strings.Join(got, "\n---\n"), strings.Join(tc.want, "\n---\n"))
			}
		})
	}
}

// TestSchemaTypeChecking compiles against the apps/v1 Deployment schema
// (testdata, resolved through NewSchemaResolver): misspelled fields and type
// mismatches are compile errors, valid admission-policy-style expressions
// compile, and the same expressions compile without a schema.
func TestSchemaTypeChecking(t *testing.T) {
	c := NewCompiler(Options{})
	schema := deploymentSchema(t)
	tests := []struct {
		expr string
		want string // expected issue with the schema; "" compiles
	}{
		{"object.spec.replica > 1", "resources[0].cel[0]: ERROR: <input>:1:12: undefined field 'replica'\n | object.spec.replica > 1\n | ...........^"},
		{"oldObject.spec.template.spec.containers.exists(c, c.imag == 'x')", "resources[0].cel[0]: ERROR: <input>:1:52: undefined field 'imag'\n | oldObject.spec.template.spec.containers.exists(c, c.imag == 'x')\n | ...................................................^"},
		{"object.spec.replicas == 'three'", "resources[0].cel[0]: ERROR: <input>:1:22: found no matching overload for '_==_' applied to '(int, string)'\n | object.spec.replicas == 'three'\n | .....................^"},
		{"object.spec.replicas", "resources[0].cel[0]: must evaluate to bool but has type int"},
		{"object.metadata.labels.team == 'a'", ""},
		{"object.metadata.namespace == 'shop'", ""}, // a CEL reserved word, as in admission policies
		{"has(object.spec.replicas) && object.spec.replicas > 2", ""},
		{"object.spec != oldObject.spec", ""},
		{"oldObject == null || object.metadata.generation > oldObject.metadata.generation", ""},
		// date-time and int-or-string fields hold their JSON form, as in an admission policy.
		{"object.metadata.creationTimestamp.startsWith('2025')", ""},
		{"object.spec.strategy.rollingUpdate.maxSurge == '25%'", ""},
		// Quantity is oneOf string/number in OpenAPI v3: dyn.
		{"quantity(object.spec.template.spec.containers[0].resources.limits.memory).isLessThan(quantity('1Gi'))", ""},
		{"object.status.conditions.exists(c, c.type == 'Available' && c.status == 'True')", ""},
		{"object.spec.template.spec.containers.all(c, c.ports.all(p, p.containerPort > 1024))", ""},
		// Variables keep the schema types.
		{"variables.spec.replica > 1", "resources[0].cel[0]: ERROR: <input>:1:15: undefined field 'replica'\n | variables.spec.replica > 1\n | ..............^"},
		{"variables.spec.replicas > 1 && variables.names.all(n, n != '')", ""},
	}
	vars := []Variable{
		{Name: "spec", Expression: "object.spec"},
		{Name: "names", Expression: "object.spec.template.spec.containers.map(c, c.name)"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			src := Source{Expressions: []string{tc.expr}, Variables: vars}
			_, issues := c.Compile("resources[0]", src, schema)
			got := strings.Join(issueStrings(issues), "\n")
			if got != tc.want {
				t.Errorf("with schema:\n%s\nwant:\n%s", got, tc.want)
			}
			// Without a schema only the non-type errors remain.
			_, issues = c.Compile("resources[0]", src, nil)
			if tc.want == "" || strings.Contains(tc.want, "Syntax error") {
				if issues != nil {
					t.Errorf("without schema: %v", issues)
				}
			}
		})
	}
}

// TestSchemaRuntimeView checks how schema nodes are typed: as the JSON
// values an admission policy sees, dyn where the schema does not say.
func TestSchemaRuntimeView(t *testing.T) {
	str := *spec.StringProperty()
	obj := func(props map[string]spec.Schema) spec.Schema {
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}, Properties: props}}
	}
	withExt := func(s spec.Schema, k string) spec.Schema { s.AddExtension(k, true); return s }
	ts := str
	ts.Format = "date-time"
	b := str
	b.Format = "byte"
	crd := obj(map[string]spec.Schema{
		// no metadata: declared dyn, full metadata is always there at run time
		"spec": obj(map[string]spec.Schema{
			"when":     ts,
			"data":     b,
			"ratio":    {SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"number"}}},
			"count":    *spec.Int64Property(),
			"free":     withExt(obj(map[string]spec.Schema{"known": str}), "x-kubernetes-preserve-unknown-fields"),
			"dashed":   obj(map[string]spec.Schema{"my-field": str}),
			"untyped":  {},
			"empty":    obj(nil),
			"selector": {SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}, AdditionalProperties: &spec.SchemaOrBool{Allows: true, Schema: &str}}},
		}),
	})
	c := NewCompiler(Options{})
	ok := []string{
		"object.metadata.labels.app == 'x'",
		"object.spec.when.startsWith('2025')",
		"object.spec.data == 'aGVsbG8='",
		"object.spec.ratio > 0.5 || object.spec.ratio > 1",
		"object.spec.count > 1",
		"object.spec.free.anything == 1",
		"object.spec.dashed['my-field'] == 'x'",
		"object.spec.untyped.x == 1",
		"object.spec.empty.x == 1",
		"object.spec.selector.any == 'x'",
		"object.apiVersion == 'v1' && object.kind == 'X'",
	}
	for _, e := range ok {
		if _, issues := c.Compile("r", Source{Expressions: []string{e}}, &crd); issues != nil {
			t.Errorf("%s: %v", e, issues)
		}
	}
	bad := map[string]string{
		"object.spec.cont > 1":                                 "undefined field 'cont'",
		"object.spec.count == 'x'":                             "found no matching overload for '_==_' applied to '(int, string)'",
		"object.spec.when < timestamp('2025-01-01T00:00:00Z')": "found no matching overload for '_<_' applied to '(string, timestamp)'",
	}
	for e, want := range bad {
		_, issues := c.Compile("r", Source{Expressions: []string{e}}, &crd)
		if len(issues) != 1 || !strings.Contains(issues[0].Message, want) {
			t.Errorf("%s: got %v, want %q", e, issues, want)
		}
	}
}

func TestCostEstimate(t *testing.T) {
	c := NewCompiler(Options{})
	schema := deploymentSchema(t)
	containers := "object.spec.template.spec.containers"
	accepted := []string{
		"changedPaths.exists(p, p.startsWith('spec.'))",
		"object.metadata.labels.exists(k, k.startsWith('team'))",
		containers + ".exists(c, !c.image.startsWith('registry.example.com/'))",
		containers + ".all(c, c.image.matches('^(docker\\\\.io|quay\\\\.io|registry\\\\.example\\\\.com)/[a-z0-9-]+/[a-z0-9-]+:[a-z0-9.]+$'))",
		containers + ".all(c, c.ports.all(p, p.containerPort > 1024))",
		containers + ".exists(c, c.resources.limits.exists(k, quantity(c.resources.limits[k]).isGreaterThan(quantity('1Gi'))))",
		"object.metadata.labels.all(k, object.metadata.labels[k].matches('^[a-z0-9-]*$'))",
	}
	rejected := []string{
		// three nested loops
		containers + ".all(c, c.ports.all(p, c.env.all(e, e.name != p.name)))",
		// quadratic over the same list
		"changedPaths.all(p, changedPaths.exists(q, p == q))",
	}
	for _, s := range []*spec.Schema{nil, schema} {
		for _, e := range accepted {
			if _, issues := c.Compile("r", Source{Expressions: []string{e}}, s); issues != nil {
				t.Errorf("schema=%v %s: %v", s != nil, e, issues)
			}
		}
		for _, e := range rejected {
			_, issues := c.Compile("resources[2]", Source{Expressions: []string{"true", e}}, s)
			if len(issues) != 1 || issues[0].Path != "resources[2].cel[1]" ||
				!strings.HasPrefix(issues[0].Message, "estimated cost exceeds the limit (1000000) by a factor of ") {
				t.Errorf("schema=%v %s: %v", s != nil, e, issues)
			}
		}
	}
	// Variables are estimated on their own, and the limit is configurable.
	low := NewCompiler(Options{MaxEstimatedCost: 100})
	_, issues := low.Compile("r", Source{
		Expressions: []string{"variables.n > 0"},
		Variables:   []Variable{{Name: "n", Expression: "object.metadata.labels.filter(k, k.startsWith('a')).size()"}},
	}, nil)
	if len(issues) != 1 || issues[0].Path != "r.variables[0].expression" ||
		issues[0].Message != "estimated cost exceeds the limit (100) by a factor of 19.3x: simplify the expression (nested loops over lists or maps, regexes over long strings are expensive) or raise the limit" {
		t.Errorf("low limit: %v", issueStrings(issues))
	}
}

func TestSchemaCache(t *testing.T) {
	c := NewCompiler(Options{})
	s := deploymentSchema(t)
	for range 3 {
		if _, issues := c.Compile("r", Source{Expressions: []string{"object.spec.replicas > 1"}}, s); issues != nil {
			t.Fatal(issues)
		}
	}
	c.schemas.mu.Lock()
	n := len(c.schemas.m)
	c.schemas.mu.Unlock()
	if n != 1 {
		t.Errorf("cache entries: %d, want 1", n)
	}
}
