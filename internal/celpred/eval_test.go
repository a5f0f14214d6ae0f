package celpred

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// fixtures returns the testdata Deployment and an updated copy: replicas
// 3 -> 5, label team a -> b, a new annotation, a new container image, status
// and the ignored metadata fields changed.
func fixtures(t testing.TB) (old, updated map[string]any) {
	t.Helper()
	old = loadObject(t, "deployment.json")
	updated = loadObject(t, "deployment.json")
	set(updated, int64(5), "spec", "replicas")
	set(updated, "b", "metadata", "labels", "team")
	set(updated, "yes", "metadata", "annotations", "reviewed")
	set(updated, int64(4), "metadata", "generation")
	set(updated, "48300", "metadata", "resourceVersion")
	set(updated, []any{}, "metadata", "managedFields")
	set(updated, int64(2), "status", "readyReplicas")
	c := get(updated, "spec", "template", "spec", "containers").([]any)[1].(map[string]any)
	c["image"] = "docker.io/prom/statsd-exporter:v0.27.0"
	return old, updated
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		v = v.(map[string]any)[p]
	}
	return v
}

func set(m map[string]any, val any, path ...string) {
	get(m, path[:len(path)-1]...).(map[string]any)[path[len(path)-1]] = val
}

type evalCase struct {
	expr string
	want bool
	err  string // substring of the expected error; "" for none
}

// checkEval compiles each case (with and without schema) and evaluates it on
// in, also with the untracked programs disabled to check that both paths
// agree.
func checkEval(t *testing.T, c *Compiler, in *Input, vars []Variable, cases []evalCase) {
	t.Helper()
	schema := deploymentSchema(t)
	for _, tc := range cases {
		for _, s := range []*spec.Schema{nil, schema} {
			p, issues := c.Compile("r", Source{Expressions: []string{tc.expr}, Variables: vars}, s)
			if issues != nil {
				t.Errorf("%s (schema=%v): %v", tc.expr, s != nil, issueStrings(issues))
				continue
			}
			for _, pp := range []*Predicate{p, trackedOnly(p)} {
				got, err := pp.Eval(context.Background(), in)
				if tc.err != "" {
					if err == nil || !strings.Contains(err.Error(), tc.err) {
						t.Errorf("%s (schema=%v): err %v, want %q", tc.expr, s != nil, err, tc.err)
					}
					continue
				}
				if err != nil || got != tc.want {
					t.Errorf("%s (schema=%v, tracked=%v): %v, %v; want %v", tc.expr, s != nil, pp != p, got, err, tc.want)
				}
			}
		}
	}
}

// trackedOnly returns a copy of p that always runs the cost-tracked programs.
func trackedOnly(p *Predicate) *Predicate {
	q := *p
	q.needsFit = false
	q.exprs = append([]program(nil), p.exprs...)
	for i := range q.exprs {
		q.exprs[i].untracked = nil
	}
	q.vars = append([]compiledVariable(nil), p.vars...)
	for i := range q.vars {
		q.vars[i].untracked = nil
	}
	return &q
}

func TestVariablesOfTheEnvironment(t *testing.T) {
	c := NewCompiler(Options{})
	old, updated := fixtures(t)

	added := NewInput("ADDED", old, nil)
	checkEval(t, c, added, nil, []evalCase{
		{expr: "eventType == 'ADDED'", want: true},
		{expr: "object.metadata.name == 'web' && object.spec.replicas == 3", want: true},
		{expr: "oldObject == null", want: true},
		{expr: "changedPaths == []", want: true},
		{expr: "object.spec.template.spec.containers[1].ports[0].containerPort == 9102", want: true},
	})

	// oldObject is ignored unless UPDATED.
	deleted := NewInput("DELETED", updated, old)
	checkEval(t, c, deleted, nil, []evalCase{
		{expr: "eventType == 'DELETED' && oldObject == null && object.spec.replicas == 5", want: true},
		{expr: "size(changedPaths) == 0", want: true},
	})

	up := NewInput("UPDATED", updated, old)
	checkEval(t, c, up, nil, []evalCase{
		{expr: "eventType == 'UPDATED'", want: true},
		{expr: "oldObject.spec.replicas == 3 && object.spec.replicas == 5", want: true},
		{expr: "object.spec != oldObject.spec", want: true},
		{expr: "object.status == oldObject.status", want: false},
		{expr: "object.metadata.labels == oldObject.metadata.labels", want: false},
		{expr: "object.spec.selector == oldObject.spec.selector", want: true},
		{expr: "changedPaths.exists(p, p.startsWith('spec.'))", want: true},
		{expr: "'metadata.labels.team' in changedPaths", want: true},
		{expr: "changedPaths.all(p, !p.startsWith('metadata.managedFields'))", want: true},
	})
}

func TestChangedPaths(t *testing.T) {
	old, updated := fixtures(t)
	want := []string{
		"metadata.annotations.reviewed",
		"metadata.labels.team",
		"spec.replicas",
		"spec.template.spec.containers[1].image",
		"status.readyReplicas",
	}
	if got := diffPaths(old, updated); !reflect.DeepEqual(got, want) {
		t.Errorf("diffPaths:\n got %q\nwant %q", got, want)
	}
	c := NewCompiler(Options{})
	p, issues := c.Compile("r", Source{Expressions: []string{"changedPaths == " + jsonList(want)}}, nil)
	if issues != nil {
		t.Fatal(issues)
	}
	if ok, err := p.Eval(context.Background(), NewInput("UPDATED", updated, old)); !ok || err != nil {
		t.Errorf("changedPaths in CEL: %v %v", ok, err)
	}

	tests := []struct {
		name     string
		old, new string
		want     []string
	}{
		{"equal", `{"a":{"b":[1,{"c":"x"}]}}`, `{"a":{"b":[1,{"c":"x"}]}}`, nil},
		{"scalar", `{"spec":{"replicas":1}}`, `{"spec":{"replicas":2}}`, []string{"spec.replicas"}},
		{"whole and fractional numbers", `{"a":1,"b":1.5}`, `{"a":1.0,"b":1.5}`, nil},
		{"added and removed keys", `{"a":{"x":1}}`, `{"a":{"y":{"z":1}}}`, []string{"a.x", "a.y"}},
		{"null vs absent", `{"a":{"x":null}}`, `{"a":{}}`, []string{"a.x"}},
		{"kind change", `{"a":{"x":1}}`, `{"a":[1]}`, []string{"a"}},
		{"list elements", `{"l":[{"n":"a","v":1},{"n":"b"}]}`, `{"l":[{"n":"a","v":2},{"n":"b"},{"n":"c"}]}`, []string{"l[0].v", "l[2]"}},
		{"shorter list", `{"l":[1,2,3]}`, `{"l":[1]}`, []string{"l[1]", "l[2]"}},
		{"keys with dots", `{"metadata":{"labels":{"app.kubernetes.io/name":"a"}}}`, `{"metadata":{"labels":{"app.kubernetes.io/name":"b"}}}`, []string{"metadata.labels.app.kubernetes.io/name"}},
		{"ignored", `{"metadata":{"resourceVersion":"1","generation":1,"managedFields":[]}}`, `{"metadata":{"resourceVersion":"2","generation":2}}`, nil},
		{"ignored only under metadata", `{"spec":{"generation":1,"metadata":{"generation":1}}}`, `{"spec":{"generation":2,"metadata":{"generation":2}}}`, []string{"spec.generation", "spec.metadata.generation"}},
		{"sorted", `{"b":1,"a":{"z":1,"b":1},"a.c":1}`, `{"b":2,"a":{"z":2,"b":2},"a.c":2}`, []string{"a.b", "a.c", "a.z", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diffPaths(parse(t, tc.old), parse(t, tc.new))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func parse(t testing.TB, s string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jsonList(l []string) string {
	b, _ := json.Marshal(l)
	return strings.ReplaceAll(string(b), `"`, `'`)
}

// TestChangedPathsLazy: changedPaths is computed only by predicates that
// reference it, and once per Input.
func TestChangedPathsLazy(t *testing.T) {
	c := NewCompiler(Options{})
	old, updated := fixtures(t)
	in := NewInput("UPDATED", updated, old)
	p, _ := c.Compile("r", Source{Expressions: []string{"object.spec.replicas > 1"}}, nil)
	if _, err := p.Eval(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if in.changed != nil {
		t.Fatal("changedPaths computed without a reference to it")
	}
	p, _ = c.Compile("r", Source{Expressions: []string{"changedPaths.size() > 0"}}, nil)
	if _, err := p.Eval(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	first := in.changed
	if first == nil {
		t.Fatal("changedPaths not computed")
	}
	if _, err := p.Eval(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	if in.changed != first {
		t.Fatal("changedPaths computed twice")
	}
}

func TestNamedVariables(t *testing.T) {
	c := NewCompiler(Options{})
	old, updated := fixtures(t)
	in := NewInput("UPDATED", updated, old)
	vars := []Variable{
		{Name: "replicas", Expression: "has(object.spec.replicas) ? object.spec.replicas : 1"},
		{Name: "images", Expression: "object.spec.template.spec.containers.map(c, c.image)"},
		{Name: "untrusted", Expression: "variables.images.filter(i, !i.startsWith('registry.example.com/'))"},
		{Name: "broken", Expression: "object.metadata.labels['nosuchlabel'] == 'x'"},
	}
	checkEval(t, c, in, vars, []evalCase{
		{expr: "variables.replicas == 5", want: true},
		{expr: "variables.untrusted == ['docker.io/prom/statsd-exporter:v0.27.0']", want: true},
		{expr: "variables.replicas > 3 && variables.images.size() == 2", want: true},
		// Lazy: an unreferenced failing variable does not matter...
		{expr: "variables.replicas > 100", want: false},
		// ...a referenced one is an evaluation error naming it.
		{expr: "variables.broken", err: "variables.broken: no such key: nosuchlabel"},
	})

	// Memoized: a variable is evaluated once per Eval, whatever the number of
	// references (the same list value comes back).
	p, issues := c.Compile("r", Source{Expressions: []string{"true"}, Variables: vars}, nil)
	if issues != nil {
		t.Fatal(issues)
	}
	a := newVarsActivation(context.Background(), p, in, true)
	v1, _ := a.vars.Find(types.String("images"))
	v2, _ := a.vars.Find(types.String("images"))
	if v1 == nil || !sameVal(v1, v2) {
		t.Errorf("variable evaluated twice: %v %v", v1, v2)
	}
	if a.vars.vals[0] != nil || a.vars.vals[2] != nil {
		t.Errorf("unreferenced variables were evaluated")
	}
}

func sameVal(a, b ref.Val) bool {
	return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer()
}

func TestLibraries(t *testing.T) {
	c := NewCompiler(Options{})
	in := NewInput("ADDED", loadObject(t, "deployment.json"), nil)
	containers := "object.spec.template.spec.containers"
	checkEval(t, c, in, nil, []evalCase{
		// quantity
		{expr: "quantity(" + containers + "[0].resources.limits.memory).isGreaterThan(quantity('256Mi'))", want: true},
		{expr: "quantity(" + containers + "[0].resources.requests.cpu).asApproximateFloat() == 0.25", want: true},
		{expr: containers + ".all(c, !has(c.resources.limits) || quantity(c.resources.limits.memory).compareTo(quantity('1Gi')) <= 0)", want: true},
		// url
		{expr: "url(" + containers + "[0].env[1].value).getHostname() == 'cache.shop.svc'", want: true},
		{expr: "url(" + containers + "[0].env[1].value).getPort() == '6379' && url(" + containers + "[0].env[1].value).getScheme() == 'https'", want: true},
		{expr: "isURL('not a url')", want: false},
		// lists
		{expr: containers + ".map(c, c.name).isSorted()", want: false},
		{expr: "['metrics', 'web'].isSorted() && [3, 1, 2].max() == 3 && [1, 2, 3].sum() == 6", want: true},
		{expr: "object.metadata.labels.map(k, k).sort()[0] == 'app.kubernetes.io/name'", want: true},
		// regex
		{expr: containers + "[0].image.find('[0-9]+\\\\.[0-9]+\\\\.[0-9]+') == '1.4.2'", want: true},
		{expr: "object.metadata.name.findAll('[a-z]') == ['w', 'e', 'b']", want: true},
		{expr: "object.metadata.name.matches('^w')", want: true},
		// strings extension
		{expr: containers + "[1].image.split('/')[0] == 'docker.io'", want: true},
		{expr: "object.metadata.annotations.owner.lowerAscii().endsWith('@example.com')", want: true},
		{expr: "'%s/%s'.format([object.metadata.namespace, object.metadata.name]) == 'shop/web'", want: true},
		// sets, IP/CIDR, format, semver, two-variable comprehensions, optionals
		{expr: "sets.contains(object.metadata.labels.map(k, k), ['team', 'tier'])", want: true},
		{expr: "cidr('10.0.0.0/8').containsIP(ip('10.1.2.3'))", want: true},
		{expr: "!format.dns1123Label().validate(object.metadata.name).hasValue()", want: true},
		{expr: "semver(" + containers + "[0].image.split(':')[1]).isGreaterThan(semver('1.4.0'))", want: true},
		{expr: "object.metadata.labels.exists(k, v, k == 'team' && v == 'a')", want: true},
		{expr: "object.?spec.?paused.orValue(false) == false", want: true},
	})
}

func TestEvalErrors(t *testing.T) {
	c := NewCompiler(Options{})
	in := NewInput("ADDED", loadObject(t, "deployment.json"), nil)
	checkEval(t, c, in, nil, []evalCase{
		{expr: "object.spec.paused == true", err: "no such key: paused"},
		{expr: "has(object.spec.paused) && object.spec.paused", want: false},
		{expr: "object.spec.template.spec.containers[5].name == 'x'", err: "index out of bounds: 5"},
		{expr: "quantity(object.metadata.name).isInteger()", err: "quantities must match the regular expression"},
	})
	// Dyn-only errors (with the schema these are compile errors).
	for expr, want := range map[string]string{
		"object.metadata.name > 3":  "no such overload",
		"object.spec.replicass > 3": "no such key: replicass",
	} {
		p, issues := c.Compile("r", Source{Expressions: []string{expr}}, nil)
		if issues != nil {
			t.Fatal(issues)
		}
		if _, err := p.Eval(context.Background(), in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", expr, err, want)
		}
	}

	// Several expressions: AND, and as in CEL a false one wins over an error.
	p, issues := c.Compile("r", Source{Expressions: []string{"object.spec.paused", "object.spec.replicas > 100"}}, deploymentSchema(t))
	if issues != nil {
		t.Fatal(issues)
	}
	if ok, err := p.Eval(context.Background(), in); ok || err != nil {
		t.Errorf("false && error: %v %v, want false, nil", ok, err)
	}
	p, _ = c.Compile("r", Source{Expressions: []string{"object.spec.replicas > 1", "object.spec.paused"}}, deploymentSchema(t))
	if ok, err := p.Eval(context.Background(), in); ok || err == nil || err.Error() != "cel[1]: no such key: paused" {
		t.Errorf("true && error: %v %v", ok, err)
	}
}

// TestRuntimeCostLimit: the run-time limit stops an evaluation, whether the
// input fits the cost model (untracked programs are only used when the
// limit cannot be reached) or not.
func TestRuntimeCostLimit(t *testing.T) {
	c := NewCompiler(Options{CostLimit: 50, MaxEstimatedCost: 1 << 40})
	items := make([]any, 200)
	for i := range items {
		items[i] = int64(i)
	}
	for name, obj := range map[string]map[string]any{
		"fits the model": {"items": items[:100]},
		"too large":      {"items": items},
	} {
		p, issues := c.Compile("r", Source{Expressions: []string{"object.items.all(i, i >= 0)"}}, nil)
		if issues != nil {
			t.Fatal(issues)
		}
		_, err := p.Eval(context.Background(), NewInput("ADDED", obj, nil))
		if err == nil || !strings.Contains(err.Error(), "actual cost limit exceeded") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A constant-cost expression always runs untracked; a loop only on
	// inputs that fit in the model.
	p, _ := c.Compile("r", Source{Expressions: []string{"object.items[0] == 0"}}, nil)
	if p.exprs[0].untracked == nil || !p.exprs[0].always || p.needsFit {
		t.Error("constant-cost expression: not always untracked")
	}
	c = NewCompiler(Options{})
	p, _ = c.Compile("r", Source{Expressions: []string{"object.items.all(i, i >= 0)"}}, nil)
	if p.exprs[0].untracked == nil || p.exprs[0].always || !p.needsFit {
		t.Error("loop: untracked program not conditional")
	}
	if !NewInput("ADDED", map[string]any{"items": items[:100]}, nil).fitsModel() ||
		NewInput("ADDED", map[string]any{"items": items}, nil).fitsModel() ||
		NewInput("ADDED", map[string]any{"s": strings.Repeat("x", maxStringSize+1)}, nil).fitsModel() {
		t.Error("fitsModel")
	}
}

// TestEstimateBoundsActualCost checks, on the fixtures, that the bound that
// allows untracked runs (soundCost) is above the actual cost, for every
// expression of the tests.
func TestEstimateBoundsActualCost(t *testing.T) {
	c := NewCompiler(Options{})
	old, updated := fixtures(t)
	in := NewInput("UPDATED", updated, old)
	if !in.fitsModel() {
		t.Fatal("fixture does not fit the model")
	}
	containers := "object.spec.template.spec.containers"
	exprs := []string{
		"eventType != 'UPDATED' || object.spec != oldObject.spec",
		"object.metadata.labels.exists(k, k.startsWith('team'))",
		containers + ".all(c, c.image.matches('^[a-z.]+/.*$'))",
		containers + ".all(c, c.ports.all(p, p.containerPort > 1024 && p.protocol == 'TCP'))",
		containers + ".exists(c, has(c.resources.limits) && c.resources.limits.exists(k, quantity(c.resources.limits[k]).isGreaterThan(quantity('1Gi'))))",
		"object.metadata.labels.all(k, object.metadata.labels[k].matches('^[a-z0-9-]*$'))",
		containers + ".map(c, c.name).isSorted()",
		"object.status.conditions.exists(c, c.type == 'Available' && c.status == 'True')",
		"changedPaths.all(p, changedPaths.exists(q, p == q))",
		"url(" + containers + "[0].env[1].value).getHostname() == 'cache.shop.svc'",
		"object.metadata.annotations.exists(k, object.metadata.annotations[k].contains('x'))",
		"object.metadata.creationTimestamp.startsWith('2025') && object.metadata.name.find('[a-z]+') == 'web'",
	}
	for _, tp := range typicalPredicates {
		if len(tp.src.Variables) == 0 {
			exprs = append(exprs, tp.src.Expressions...)
		}
	}
	schema := deploymentSchema(t)
	start, err := c.envs()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*spec.Schema{nil, schema} {
		env, objType := start.dynNoVars, (*apiservercel.DeclType)(nil)
		if s != nil {
			se := c.schemas.get(s, start.base)
			env, objType = se.noVars, se.objType
		}
		for _, e := range exprs {
			ast, iss := env.Compile(e)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			bound, err := soundCost(env, ast, newCostEstimator(objType, true))
			if err != nil {
				t.Fatal(err)
			}
			prog, err := env.Program(ast, c.trackedOpts...)
			if err != nil {
				t.Fatal(err)
			}
			_, det, err := prog.Eval((*inputActivation)(in))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("schema=%v bound=%d actual=%d %s", s != nil, bound, *det.ActualCost(), e)
			if actual := *det.ActualCost(); actual > bound {
				t.Errorf("schema=%v %s: actual cost %d > bound %d", s != nil, e, actual, bound)
			}
		}
	}
}

func TestContextCancel(t *testing.T) {
	c := NewCompiler(Options{MaxEstimatedCost: 1 << 40})
	items := make([]any, 1000)
	for i := range items {
		items[i] = int64(i)
	}
	p, issues := c.Compile("r", Source{Expressions: []string{"object.items.all(i, object.items.exists(j, j == i))"}}, nil)
	if issues != nil {
		t.Fatal(issues)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Eval(ctx, NewInput("ADDED", map[string]any{"items": items}, nil))
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("got %v", err)
	}
}

// TestInputNotModified: evaluation reads the caller's maps, never writes.
func TestInputNotModified(t *testing.T) {
	c := NewCompiler(Options{})
	old, updated := fixtures(t)
	wantOld, wantNew := loadCopy(t, old), loadCopy(t, updated)
	in := NewInput("UPDATED", updated, old)
	for _, tp := range typicalPredicates {
		p := mustCompile(t, c, tp.src, nil)
		if _, err := p.Eval(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(old, wantOld) || !reflect.DeepEqual(updated, wantNew) {
		t.Error("objects modified")
	}
}

func loadCopy(t *testing.T, m map[string]any) map[string]any {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return normalize(c).(map[string]any)
}

func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	}
	return v
}

// TestConcurrency: one Compiler compiling, predicates shared by goroutines
// evaluating shared Inputs (lazy conversion, changedPaths and variables
// race here if anything is unsynchronized). Run with -race.
func TestConcurrency(t *testing.T) {
	c := NewCompiler(Options{})
	schema := deploymentSchema(t)
	old, updated := fixtures(t)
	var preds []*Predicate
	for _, tp := range typicalPredicates {
		preds = append(preds, mustCompile(t, c, tp.src, nil), mustCompile(t, c, tp.src, schema))
	}
	preds = append(preds, mustCompile(t, c, Source{Expressions: []string{"object.spec != oldObject.spec && object.metadata.labels.exists(k, v, v == 'b')"}}, nil))
	want := make([]bool, len(preds))
	ref := NewInput("UPDATED", updated, old)
	for i, p := range preds {
		want[i], _ = p.Eval(context.Background(), ref)
	}
	for round := range 20 {
		in := NewInput("UPDATED", updated, old) // fresh: first accesses race
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if g == 0 && round%5 == 0 { // compile concurrently too
					mustCompile(t, c, typicalPredicates[round%len(typicalPredicates)].src, schema)
				}
				for k := range preds {
					i := (k + g) % len(preds)
					got, err := preds[i].Eval(context.Background(), in)
					if err != nil || got != want[i] {
						t.Errorf("predicate %d: %v %v, want %v", i, got, err, want[i])
					}
				}
			}()
		}
		wg.Wait()
	}
}
