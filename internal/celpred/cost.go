package celpred

import (
	"math"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"

	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
)

// The size model of cost estimation. cel-go estimates the worst-case cost of
// an expression from the maximum size of every list, map and string it
// touches. The honest maximum for an object (what CRD validation uses:
// anything that fits in a 3 MiB request) makes a single pass over an
// unbounded list, or a regex on a string, already cost more than the
// 1,000,000 limit, which would reject everyday rules such as
// changedPaths.exists(p, p.startsWith('spec.')); admission policies, which
// share the limit, are not estimated at all for that reason. Faro estimates
// with large but realistic sizes instead, so that the estimate separates the
// rules worth rejecting (three nested loops, cross products of two lists,
// regexes in nested loops) from the rest.
//
// The same model serves at run time: an Input whose lists, maps and strings
// all fit in it cannot make a program cost more than its estimate, so a
// program whose estimate is within the run-time limit runs without cost
// tracking on such inputs (see Predicate.Eval); larger inputs run tracked.
const (
	// maxCollectionSize bounds any list or map (objects, changedPaths,
	// variables' results).
	maxCollectionSize = 128
	// maxStringSize bounds any string, in bytes (label values are at most
	// 63, names 253, image references rarely more than 200).
	maxStringSize = 1024
)

// sizeEstimator gives cel-go the sizes of the model. It has two modes.
//
// Admission (sound=false), for the compile-time rejection: where the schema
// declares a smaller bound (maxItems, maxLength, maxProperties, enums) it is
// used, and a dyn value is sized like a collection (in schema-less
// expressions, dyn values are iterated far more often than they are scanned
// as strings; this keeps untyped estimates in line with typed ones).
//
// Sound (sound=true), to decide whether an untracked program may run: only
// bounds that Input checks at run time, i.e. maxCollectionSize for lists and
// maps, maxStringSize for strings and for dyn values and objects (which may
// be strings, or maps of at most maxCollectionSize entries); the results of
// variables are unknown (unbounded), as their size is not checked.
type sizeEstimator struct {
	object *apiservercel.DeclType
	sound  bool
}

// newCostEstimator returns the checker.CostEstimator of one mode: the
// Kubernetes library's estimator (function costs) with the size model.
func newCostEstimator(object *apiservercel.DeclType, sound bool) checker.CostEstimator {
	return &library.CostEstimator{SizeEstimator: &sizeEstimator{object: object, sound: sound}}
}

// EstimateSize implements checker.CostEstimator.
func (s *sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if s.sound && len(path) > 0 && path[0] == varVariables {
		return nil
	}
	var limit uint64
	switch n.Type().Kind() {
	case types.StringKind, types.BytesKind:
		limit = maxStringSize
	case types.ListKind, types.MapKind:
		limit = maxCollectionSize
	case types.DynKind, types.AnyKind, types.StructKind:
		limit = maxCollectionSize
		if s.sound {
			limit = max(maxStringSize, maxCollectionSize)
		}
	default:
		return nil
	}
	if !s.sound {
		if dt := s.declTypeAt(path); dt != nil && dt.MaxElements >= 0 && uint64(dt.MaxElements) < limit {
			limit = uint64(dt.MaxElements)
		}
	}
	return &checker.SizeEstimate{Min: 0, Max: limit}
}

// EstimateCallCost implements checker.CostEstimator; function costs are
// left to the library estimator.
func (s *sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// declTypeAt follows a checker path (variable, then field names, @items,
// @keys, @values) through the object type, as the CRD size estimator does.
func (s *sizeEstimator) declTypeAt(path []string) *apiservercel.DeclType {
	if s.object == nil || len(path) == 0 || (path[0] != varObject && path[0] != varOldObject) {
		return nil
	}
	t := s.object
	for _, name := range path[1:] {
		switch name {
		case "@items", "@values":
			t = t.ElemType
		case "@keys":
			t = t.KeyType
		default:
			f, ok := t.Fields[name]
			if !ok {
				return nil
			}
			t = f.Type
		}
		if t == nil {
			return nil
		}
	}
	return t
}

// sizeStats records the largest collection and string of a value.
type sizeStats struct {
	maxCollection, maxString int
}

func (s *sizeStats) fits() bool {
	return s.maxCollection <= maxCollectionSize && s.maxString <= maxStringSize
}

// dynSelectFactor corrects an estimate for a gap between cel-go's estimator
// and its run-time tracker: a field selection on a dyn value (object.spec
// without a schema) costs 1 at run time but nothing in the estimate. Every
// chain of such selections hangs off an operand that the estimate does count
// (an identifier or a call, at least 1), so multiplying the estimate by one
// plus the longest chain bounds the run-time cost.
func dynSelectFactor(a *celast.AST) uint64 {
	chain := map[int64]uint64{}
	longest := uint64(0)
	celast.PostOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.SelectKind || e.AsSelect().IsTestOnly() {
			return
		}
		op := e.AsSelect().Operand()
		if a.GetType(op.ID()).Kind() != types.DynKind {
			return
		}
		n := chain[op.ID()] + 1
		chain[e.ID()] = n
		longest = max(longest, n)
	}))
	return 1 + longest
}

// soundCost bounds the run-time cost of ast on inputs that fit in the cost
// model; est must be a sound-mode estimator.
func soundCost(env *cel.Env, ast *cel.Ast, est checker.CostEstimator) (uint64, error) {
	c, err := env.EstimateCost(ast, est)
	if err != nil {
		return 0, err
	}
	f := dynSelectFactor(ast.NativeRep())
	if c.Max > math.MaxUint64/f {
		return math.MaxUint64, nil
	}
	return c.Max * f, nil
}
