// Package celpred compiles and evaluates Faro's CEL filter rules (rule engine
// stage, after regex+label filters).
//
// The environment is the Kubernetes one: that of
// k8s.io/apiserver/pkg/cel/environment (its StoredExpressions flavour, the
// one meant for expressions kept in configuration files), with every
// Kubernetes CEL library (regex, lists, urls, quantity, IP/CIDR, format,
// semver, authz) and the cel-go extensions it enables (strings, sets, lists,
// two-variable comprehensions, optional types); see newBaseEnv. Expressions
// see these variables:
//
//	object       the object as delivered (for DELETED its last known state)
//	oldObject    the previous state on UPDATED, null otherwise
//	eventType    'ADDED', 'UPDATED' or 'DELETED'
//	variables    the entry's named variables, evaluated lazily (variables.NAME)
//	changedPaths on UPDATED, the sorted dotted paths that differ between
//	             oldObject and object; empty otherwise
//
// At run time object and oldObject are plain unstructured JSON values, as in
// a ValidatingAdmissionPolicy, so an expression that works there works here.
// When a schema is supplied, they are type-checked against it, so that a
// misspelled field is a compile error (see runtimeView for how the schema is
// mapped so that the checked types match the run-time values).
//
// Compile type-checks, estimates the cost of and plans every expression once;
// the resulting Predicate is immutable and shared by all goroutines. Each
// event is wrapped once in an Input, shared by every entry that evaluates it.
// Compiler, Predicate and Input are safe for concurrent use.
//
// RATIONALE.md explains the non-obvious choices.
package celpred

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"weak"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Names of the variables every expression can use.
const (
	varObject       = "object"
	varOldObject    = "oldObject"
	varEventType    = "eventType"
	varVariables    = "variables"
	varChangedPaths = "changedPaths"
)

// DefaultCostLimit is the default of both Options fields: the per-expression
// limit of ValidatingAdmissionPolicy and CRD validation rules
// (k8s.io/apiserver/pkg/apis/cel.PerCallLimit), roughly 0.1 s of CPU.
const DefaultCostLimit uint64 = celconfig.PerCallLimit

// Options configures a Compiler. Zero fields take their defaults.
type Options struct {
	// MaxEstimatedCost rejects, at compile time, an expression or variable
	// whose worst-case estimated cost exceeds it (see cost.go for the size
	// model behind the estimate). Default DefaultCostLimit.
	MaxEstimatedCost uint64
	// CostLimit is the run-time cost limit of one evaluation of one
	// expression or variable; evaluation stops with an error beyond it.
	// Default DefaultCostLimit.
	CostLimit uint64
}

// Compiler compiles Sources into Predicates. It holds the CEL environments,
// built once, by the first Compile: a daemon whose rules have no CEL never
// builds them (they take a few MB of code and heap). It is safe for
// concurrent use.
type Compiler struct {
	opts                       Options
	trackedOpts, untrackedOpts []cel.ProgramOption
	envs                       func() (*envs, error)
	// schemas caches the environment of each schema passed to Compile.
	schemas schemaCache
}

// envs are the environments every compilation starts from.
type envs struct {
	// base: the Kubernetes base environment plus eventType and changedPaths.
	base *cel.Env
	// dynObjects: base plus object and oldObject typed dyn.
	dynObjects *cel.Env
	// dynNoVars: dynObjects plus an empty variables type, for the common
	// case (no schema, no variables).
	dynNoVars *cel.Env
}

// Type names of the declared object types. Only visible in error messages.
const (
	objectTypeName    = "Object"
	variablesTypeName = "Variables"
)

// NewCompiler returns a Compiler with opts, its zero fields defaulted.
func NewCompiler(opts Options) *Compiler {
	if opts.MaxEstimatedCost == 0 {
		opts.MaxEstimatedCost = DefaultCostLimit
	}
	if opts.CostLimit == 0 {
		opts.CostLimit = DefaultCostLimit
	}
	c := &Compiler{opts: opts, envs: sync.OnceValues(newEnvs)}
	c.trackedOpts, c.untrackedOpts = programOptions(opts.CostLimit)
	c.schemas.m = map[weak.Pointer[spec.Schema]]*schemaEnv{}
	return c
}

func newEnvs() (*envs, error) {
	var e envs
	var err error
	if e.base, err = newBaseEnv(
		cel.Variable(varEventType, cel.StringType),
		cel.Variable(varChangedPaths, cel.ListType(cel.StringType)),
	); err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	if e.dynObjects, err = withObjects(e.base, nil); err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	if e.dynNoVars, err = withVariables(e.dynObjects, emptyVariablesType); err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return &e, nil
}

// emptyVariablesType types `variables` for entries without variables, so
// that variables.x is a compile error there. Never mutated.
var emptyVariablesType = apiservercel.NewObjectType(variablesTypeName, map[string]*apiservercel.DeclField{})

// withObjects declares object and oldObject, typed by t or dyn when t is nil.
func withObjects(env *cel.Env, t *apiservercel.DeclType) (*cel.Env, error) {
	if t == nil {
		return env.Extend(cel.Variable(varObject, cel.DynType), cel.Variable(varOldObject, cel.DynType))
	}
	return extendEnv(env, []*apiservercel.DeclType{t},
		cel.Variable(varObject, t.CelType()), cel.Variable(varOldObject, t.CelType()))
}

func withVariables(env *cel.Env, t *apiservercel.DeclType) (*cel.Env, error) {
	return extendEnv(env, []*apiservercel.DeclType{t}, cel.Variable(varVariables, t.CelType()))
}

// Variable is a named expression, usable in the entry's expressions (and in
// later variables) as variables.NAME.
type Variable struct{ Name, Expression string }

// Source is the CEL part of one config entry.
type Source struct {
	Expressions []string // all must evaluate to true
	Variables   []Variable
}

// Issue is one problem found by Compile.
type Issue struct {
	// Path locates the offending field in the config, e.g. "resources[1].cel[0]"
	// or "resources[1].variables[0].expression".
	Path string
	// Message is cel-go's report (with line:col, the source line and a caret)
	// or a description of the problem.
	Message string
}

func (i Issue) String() string { return i.Path + ": " + i.Message }

// Error implements error, so that an Issue can be returned or wrapped as one.
func (i Issue) Error() string { return i.String() }

// Predicate is the compiled form of a Source. It is immutable and safe for
// concurrent use.
type Predicate struct {
	exprs []program
	vars  []compiledVariable
	// varIndex maps a variable name to its index in vars.
	varIndex map[string]int
	// usesChangedPaths: some expression or variable references changedPaths.
	usesChangedPaths bool
	// needsFit: some program may run untracked if the input fits in the
	// cost model.
	needsFit bool
}

// program is one compiled expression: always a tracked program (run-time
// cost limit), and an untracked one when its worst-case cost on inputs that
// fit in the cost model is within the limit (always: whatever the input).
type program struct {
	tracked, untracked cel.Program
	always             bool
}

type compiledVariable struct {
	name string
	program
}

var identRE = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*$`)

// Compile type-checks and plans the expressions and variables of src. With a
// non-nil schema (the OpenAPI v3 schema of the resource, $refs inlined, as
// SchemaResolver returns it) object and oldObject are typed from it; without
// one they are dyn. path prefixes every Issue: expressions are reported under
// path+".cel[i]", variables under path+".variables[i].name" or
// ".variables[i].expression". Every problem is reported, not just the first;
// the Predicate is nil when there is any.
func (c *Compiler) Compile(path string, src Source, schema *spec.Schema) (*Predicate, []Issue) {
	var issues []Issue
	add := func(p, format string, args ...any) {
		issues = append(issues, Issue{Path: p, Message: fmt.Sprintf(format, args...)})
	}
	if len(src.Expressions) == 0 {
		add(path+".cel", "at least one expression is required")
	}

	start, err := c.envs()
	if err != nil {
		add(path, "internal error: %v", err)
		return nil, issues
	}
	objects, noVars, objType := start.dynObjects, start.dynNoVars, (*apiservercel.DeclType)(nil)
	if schema != nil {
		se := c.schemas.get(schema, start.base)
		if se.err != nil {
			add(path, "cannot type object from its schema: %v", se.err)
			return nil, issues
		}
		if se.objType != nil {
			objects, noVars, objType = se.env, se.noVars, se.objType
		}
	}
	est := estimators{
		admission: newCostEstimator(objType, false),
		sound:     newCostEstimator(objType, true),
		unbounded: &library.CostEstimator{}, // sizes unknown
	}

	// The variables type is built as the variables compile, in order, as
	// ValidatingAdmissionPolicy does: each variable can use the earlier ones,
	// and its declared type is the output type of its expression.
	env := noVars
	var varsType *apiservercel.DeclType
	if len(src.Variables) > 0 {
		varsType = apiservercel.NewObjectType(variablesTypeName, map[string]*apiservercel.DeclField{})
		e, err := withVariables(objects, varsType)
		if err != nil {
			add(path, "internal error: building the CEL environment: %v", err)
			return nil, issues
		}
		env = e
	}

	p := &Predicate{}
	if len(src.Variables) > 0 {
		p.varIndex = make(map[string]int, len(src.Variables))
	}
	var known map[string]*apiservercel.DeclType // object types by name, for declTypeOf
	badVars := false                            // some variable failed (and is declared dyn)
	for i, v := range src.Variables {
		vpath := fmt.Sprintf("%s.variables[%d]", path, i)
		nameOK := true
		switch {
		case !identRE.MatchString(v.Name):
			add(vpath+".name", "%q is not a valid variable name (letters, digits and _, not starting with a digit)", v.Name)
			nameOK = false
		default:
			if _, dup := p.varIndex[v.Name]; dup {
				add(vpath+".name", "duplicate variable name %q", v.Name)
				nameOK = false
			}
		}
		prog, outType, ok := c.compileOne(env, est, p, vpath+".expression", v.Expression, nil, false, &issues)
		if !nameOK {
			continue
		}
		if !ok {
			// Declare it anyway (dyn) so that its uses do not add noise.
			outType = nil
			badVars = true
		}
		if known == nil && objType != nil {
			known = apiservercel.FieldTypeMap(objectTypeName, objType)
		}
		varsType.Fields[v.Name] = apiservercel.NewDeclField(v.Name, declTypeOf(outType, known), true, nil, nil)
		p.varIndex[v.Name] = len(p.vars)
		p.vars = append(p.vars, compiledVariable{name: v.Name, program: prog})
	}
	for i, expr := range src.Expressions {
		prog, _, ok := c.compileOne(env, est, p, fmt.Sprintf("%s.cel[%d]", path, i), expr, cel.BoolType, badVars, &issues)
		if ok {
			p.exprs = append(p.exprs, prog)
		}
	}
	if len(issues) > 0 {
		return nil, issues
	}
	return p, nil
}

type estimators struct{ admission, sound, unbounded checker.CostEstimator }

// compileOne compiles, checks the output type (when want is non-nil),
// estimates the cost and plans one expression. quietDyn silences the
// complaint about a dyn result, which a failed variable (declared dyn)
// would cause.
func (c *Compiler) compileOne(env *cel.Env, est estimators, p *Predicate, path, expr string, want *cel.Type, quietDyn bool, issues *[]Issue) (program, *cel.Type, bool) {
	add := func(format string, args ...any) {
		*issues = append(*issues, Issue{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(expr) == "" {
		add("empty expression")
		return program{}, nil, false
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		add("%s", iss.String())
		return program{}, nil, false
	}
	out := ast.OutputType()
	if want != nil && !out.IsExactType(want) {
		if quietDyn && out.IsExactType(cel.DynType) {
			return program{}, nil, false
		}
		hint := ""
		if out.IsExactType(cel.DynType) {
			hint = " (its type is only known at run time: compare it, e.g. `... == true`, or convert it with bool(...))"
		}
		add("must evaluate to %s but has type %s%s", want, out, hint)
		return program{}, nil, false
	}
	cost, err := env.EstimateCost(ast, est.admission)
	if err != nil {
		add("internal error: estimating the cost: %v", err)
		return program{}, nil, false
	}
	if cost.Max > c.opts.MaxEstimatedCost {
		add("%s", costMessage(cost.Max, c.opts.MaxEstimatedCost))
		return program{}, nil, false
	}
	var prog program
	if prog.tracked, err = env.Program(ast, c.trackedOpts...); err != nil {
		add("internal error: planning the program: %v", err)
		return program{}, nil, false
	}
	if bound, err := soundCost(env, ast, est.sound); err == nil && bound <= c.opts.CostLimit {
		if prog.untracked, err = env.Program(ast, c.untrackedOpts...); err != nil {
			add("internal error: planning the program: %v", err)
			return program{}, nil, false
		}
		// Most predicates (no loop, no regex) cost the same whatever the
		// sizes: they need no look at the input.
		bound, err := soundCost(env, ast, est.unbounded)
		prog.always = err == nil && bound <= c.opts.CostLimit
		p.needsFit = p.needsFit || !prog.always
	}
	for _, r := range ast.NativeRep().ReferenceMap() {
		if r.Name == varChangedPaths {
			p.usesChangedPaths = true
		}
	}
	return prog, out, true
}

func costMessage(est, limit uint64) string {
	factor := float64(est) / float64(limit)
	var f string
	switch {
	case factor > 100:
		f = "more than 100x"
	case factor < 1.5:
		f = fmt.Sprintf("%.2fx", factor)
	default:
		f = fmt.Sprintf("%.1fx", factor)
	}
	return fmt.Sprintf("estimated cost exceeds the limit (%d) by a factor of %s: "+
		"simplify the expression (nested loops over lists or maps, regexes over long strings are expensive) "+
		"or raise the limit", limit, f)
}

// Eval evaluates the predicate on in (non-nil): true when every expression is
// true.
// As with CEL's &&, a false expression wins over an error in another one;
// otherwise the first evaluation error (missing key without has(), cost
// limit exceeded, cancelled ctx, ...) is returned with false. ctx, when it can
// be cancelled, interrupts long evaluations.
//
// Every evaluation is bounded by the cost limit: programs run tracked, except
// when their worst-case cost is known to be within the limit, whatever the
// input (most predicates: no loop, no regex) or because the input fits in
// the cost model (cost.go). The tracking is then pure overhead (4-5x on
// simple predicates) and is skipped.
func (p *Predicate) Eval(ctx context.Context, in *Input) (bool, error) {
	fits := false
	if p.needsFit {
		fits = in.fitsModel()
		if fits && p.usesChangedPaths {
			_, fits = in.changedPaths()
		}
	}
	var act interpreter.Activation = (*inputActivation)(in)
	if len(p.vars) > 0 {
		act = newVarsActivation(ctx, p, in, fits)
	}
	var firstErr error
	for i := range p.exprs {
		out, err := p.exprs[i].run(ctx, act, fits)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("cel[%d]: %w", i, err)
			}
			continue
		}
		b, ok := out.(types.Bool)
		if !ok {
			if firstErr == nil {
				firstErr = fmt.Errorf("cel[%d]: evaluated to %s, not bool", i, out.Type().TypeName())
			}
			continue
		}
		if !b {
			return false, nil
		}
	}
	if firstErr != nil {
		return false, firstErr
	}
	return true, nil
}

// run evaluates the program, untracked if allowed (fits: the input fits in
// the cost model). The context-aware path costs a context.WithCancel per
// evaluation inside cel-go, so it is only taken when ctx can be cancelled.
func (p *program) run(ctx context.Context, act interpreter.Activation, fits bool) (ref.Val, error) {
	prog := p.tracked
	if p.untracked != nil && (p.always || fits) {
		prog = p.untracked
	}
	if ctx == nil || ctx.Done() == nil {
		out, _, err := prog.Eval(act)
		return out, err
	}
	out, _, err := prog.ContextEval(ctx, act)
	return out, err
}
