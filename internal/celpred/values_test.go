package celpred

import (
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// TestLazyValues: the lazily converted object behaves exactly as cel-go's
// own conversion of the same map (the reference), for the operations rules
// use on maps and lists.
func TestLazyValues(t *testing.T) {
	c := NewCompiler(Options{})
	obj := loadObject(t, "deployment.json")
	containers := "object.spec.template.spec.containers"
	exprs := []string{
		"object.metadata.labels == {'app.kubernetes.io/name': 'web', 'app.kubernetes.io/part-of': 'shop', 'team': 'a', 'tier': 'frontend'}",
		"object.metadata.labels != {'team': 'a'}",
		"{'team': 'a'} == object.metadata.labels",
		containers + "[0].ports == [{'name': dyn('http'), 'containerPort': dyn(8080), 'protocol': dyn('TCP')}]",
		"object.spec.selector.matchLabels in [{'app.kubernetes.io/name': 'web'}]",
		"{'a': object.spec.selector}.a == object.spec.selector",
		"size(" + containers + " + [1]) == 3",
		"type(object.spec) == map && type(" + containers + ") == list",
		containers + ".all(i, c, i < 2 && c.name != '')",
		"object.metadata.labels.all(k, v, k != '' && v != '')",
		"object.metadata.labels.exists(k, k == 'team')",
		"object.metadata.labels.map(k, k).size() == 4",
		"optional.ofNonZeroValue(object.metadata.annotations).hasValue()",
		"optional.ofNonZeroValue(object.spec.template.spec.securityContext).hasValue()",
		"optional.ofNonZeroValue(" + containers + ").hasValue()",
		"'nope' in object.metadata.labels",
		"1 in object.metadata.labels",
		"'team' in object.metadata.labels",
		"dyn(object.spec).replicas == 3",
		"'%s'.format([object.spec.selector])",
		"'%s'.format([" + containers + "[0].ports])",
		"object.metadata.labels['nope']",
		containers + "[7]",
		"object.spec.replicas + 0.5",
		"object.status.conditions.filter(c, c.status == 'True').map(c, c.type)",
		"object.spec.template.spec.containers.map(c, c.resources)",
		"sets.contains(" + containers + ", [" + containers + "[0]])",
		"object.metadata.?labels.?team",
		"object.spec.template.spec.containers.sortBy(c, c.name).map(c, c.name)",
		containers + ".slice(0, 1)",
		"[" + containers + "].flatten().size()",
	}
	in := NewInput("ADDED", obj, nil)
	refAct, err := interpreter.NewActivation(map[string]any{
		"object": obj, "oldObject": nil, "eventType": "ADDED", "changedPaths": []string{}, "variables": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	start, err := c.envs()
	if err != nil {
		t.Fatal(err)
	}
	env := start.dynNoVars
	for _, e := range exprs {
		ast, iss := env.Compile(e)
		if iss.Err() != nil {
			t.Errorf("%s: %v", e, iss.Err())
			continue
		}
		prog, err := env.Program(ast, c.untrackedOpts...)
		if err != nil {
			t.Fatal(err)
		}
		got, _, gotErr := prog.Eval((*inputActivation)(in))
		want, _, wantErr := prog.Eval(refAct)
		switch {
		case (gotErr != nil) != (wantErr != nil):
			t.Errorf("%s: error %v, reference %v", e, gotErr, wantErr)
		case gotErr != nil:
			if gotErr.Error() != wantErr.Error() {
				t.Errorf("%s: error %q, reference %q", e, gotErr, wantErr)
			}
		case got.Equal(want) != types.True || want.Equal(got) != types.True:
			t.Errorf("%s: %v, reference %v", e, got, want)
		}
	}
}
