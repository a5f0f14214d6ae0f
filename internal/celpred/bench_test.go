package celpred

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// benchObjects returns the ~2.5 KB Deployment of testdata and a copy
// differing in spec.replicas and a label.
func benchObjects(b *testing.B) (obj, old map[string]any) {
	obj = loadObject(b, "deployment.json")
	old = loadObject(b, "deployment.json")
	old["spec"].(map[string]any)["replicas"] = int64(2)
	old["metadata"].(map[string]any)["labels"].(map[string]any)["team"] = "b"
	old["metadata"].(map[string]any)["resourceVersion"] = "48200"
	return obj, old
}

var typicalPredicates = []struct {
	name string
	src  Source
}{
	{"label-in-set", Source{Expressions: []string{"has(object.metadata.labels) && object.metadata.labels['team'] in ['a', 'b']"}}},
	{"replicas-threshold", Source{Expressions: []string{"object.spec.replicas > 2"}}},
	{"spec-changed", Source{Expressions: []string{"changedPaths.exists(p, p.startsWith('spec.'))"}}},
	{"untrusted-image", Source{Expressions: []string{"object.spec.template.spec.containers.exists(c, !c.image.startsWith('registry.example.com/'))"}}},
	{"two-exprs+variable", Source{
		Expressions: []string{"eventType == 'UPDATED'", "variables.replicas >= 3"},
		Variables:   []Variable{{Name: "replicas", Expression: "has(object.spec.replicas) ? object.spec.replicas : 1"}},
	}},
}

func mustCompile(b testing.TB, c *Compiler, src Source, s *spec.Schema) *Predicate {
	b.Helper()
	p, issues := c.Compile("bench", src, s)
	if issues != nil {
		b.Fatal(issues)
	}
	return p
}

// BenchmarkEval: one entry's predicate on one already converted event.
func BenchmarkEval(b *testing.B) {
	c := NewCompiler(Options{})
	obj, old := benchObjects(b)
	in := NewInput("UPDATED", obj, old)
	ctx := context.Background()
	for _, typed := range []bool{false, true} {
		var s *spec.Schema
		mode := "dyn"
		if typed {
			s, mode = deploymentSchema(b), "schema"
		}
		for _, tp := range typicalPredicates {
			p := mustCompile(b, c, tp.src, s)
			if _, err := p.Eval(ctx, in); err != nil {
				b.Fatal(err)
			}
			b.Run(mode+"/"+tp.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.Eval(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEvalTracked: as BenchmarkEval, always with run-time cost
// tracking (what every evaluation would cost without the untracked path).
func BenchmarkEvalTracked(b *testing.B) {
	c := NewCompiler(Options{})
	obj, old := benchObjects(b)
	in := NewInput("UPDATED", obj, old)
	ctx := context.Background()
	s := deploymentSchema(b)
	for _, tp := range typicalPredicates {
		p := trackedOnly(mustCompile(b, c, tp.src, s))
		b.Run("schema/"+tp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Eval(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFirstEval: a fresh Input and one evaluation, i.e. the conversion
// of what the predicate reads plus the evaluation (the cost for an event
// that a single entry looks at).
func BenchmarkFirstEval(b *testing.B) {
	c := NewCompiler(Options{})
	obj, old := benchObjects(b)
	ctx := context.Background()
	s := deploymentSchema(b)
	for _, tp := range typicalPredicates {
		p := mustCompile(b, c, tp.src, s)
		b.Run("schema/"+tp.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Eval(ctx, NewInput("UPDATED", obj, old)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// convertAll forces the conversion of every lazy node.
func convertAll(v ref.Val) {
	switch x := v.(type) {
	case *lazyMap:
		for _, e := range x.val() {
			convertAll(e)
		}
	case *lazyList:
		for i := range x.raw {
			convertAll(x.val().Get(types.Int(i)))
		}
	}
}

// BenchmarkNewInput: preparing one event, done once per event; the
// conversion itself is lazy (see convert-all for its full cost).
func BenchmarkNewInput(b *testing.B) {
	obj, old := benchObjects(b)
	b.Run("ADDED", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewInput("ADDED", obj, nil)
		}
	})
	b.Run("UPDATED", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewInput("UPDATED", obj, old)
		}
	})
	b.Run("UPDATED+changedPaths", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewInput("UPDATED", obj, old).changedPaths()
		}
	})
	b.Run("ADDED+convert-all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			convertAll(NewInput("ADDED", obj, nil).object)
		}
	})
	b.Run("ADDED+fitsModel", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			NewInput("ADDED", obj, nil).fitsModel()
		}
	})
}

// BenchmarkMatch50: the whole CEL stage for one UPDATED event on a resource
// with 50 entries: one NewInput, then 50 predicates (the typical ones, in
// turn, all evaluated whatever their result), conversion and changedPaths
// included.
func BenchmarkMatch50(b *testing.B) {
	c := NewCompiler(Options{})
	obj, old := benchObjects(b)
	ctx := context.Background()
	for _, typed := range []bool{false, true} {
		var s *spec.Schema
		mode := "dyn"
		if typed {
			s, mode = deploymentSchema(b), "schema"
		}
		preds := make([]*Predicate, 50)
		for i := range preds {
			preds[i] = mustCompile(b, c, typicalPredicates[i%len(typicalPredicates)].src, s)
		}
		b.Run(fmt.Sprintf("%s/entries=%d", mode, len(preds)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				in := NewInput("UPDATED", obj, old)
				for _, p := range preds {
					if _, err := p.Eval(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
