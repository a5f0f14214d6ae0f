package celpred

import (
	"context"
	"fmt"
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	apiservercel "k8s.io/apiserver/pkg/cel"
)

// noVariables is `variables` for predicates without variables (any field of
// it is a compile error, so this is never read).
var noVariables = types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{})

// varsActivation is the activation of one Eval of a predicate with
// variables: the shared Input plus the lazily evaluated variables. It is
// created per Eval (a single allocation for up to 4 variables) and used by one
// goroutine only, so the memoization needs no lock.
//
// This is what ValidatingAdmissionPolicy's composition does with
// k8s.io/apiserver/pkg/cel/lazy.MapValue; lazy.MapValue costs a map, a type
// value and a closure per variable on every evaluation, hence this
// index-based equivalent.
type varsActivation struct {
	in    *Input
	vars  lazyVars
	small [4]ref.Val
}

func newVarsActivation(ctx context.Context, p *Predicate, in *Input, fits bool) *varsActivation {
	a := &varsActivation{in: in}
	a.vars = lazyVars{ctx: ctx, p: p, act: a, fits: fits}
	if len(p.vars) <= len(a.small) {
		a.vars.vals = a.small[:len(p.vars)]
	} else {
		a.vars.vals = make([]ref.Val, len(p.vars))
	}
	return a
}

func (a *varsActivation) ResolveName(name string) (any, bool) {
	if name == varVariables {
		return &a.vars, true
	}
	return (*inputActivation)(a.in).ResolveName(name)
}

func (a *varsActivation) Parent() interpreter.Activation { return nil }

// lazyVars is the value of `variables`: a map from variable name to value
// whose entries are evaluated on first access and memoized for the rest of
// the Eval.
type lazyVars struct {
	ctx  context.Context
	p    *Predicate
	act  *varsActivation
	fits bool // the input fits in the cost model
	vals []ref.Val
}

var (
	_ traits.Mapper = (*lazyVars)(nil)

	lazyVarsType = types.NewObjectType(variablesTypeName, traits.IndexerType, traits.FieldTesterType, traits.IterableType)
)

func (m *lazyVars) get(i int) ref.Val {
	if v := m.vals[i]; v != nil {
		return v
	}
	cv := &m.p.vars[i]
	v, err := cv.run(m.ctx, m.act, m.fits)
	if err != nil {
		v = types.NewErr("variables.%s: %v", cv.name, err)
	}
	m.vals[i] = v
	return v
}

// Find implements traits.Mapper.
func (m *lazyVars) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), true
	}
	i, ok := m.p.varIndex[string(k)]
	if !ok {
		return nil, false
	}
	return m.get(i), true
}

// Get implements traits.Indexer.
func (m *lazyVars) Get(key ref.Val) ref.Val {
	if v, found := m.Find(key); found {
		return v
	}
	return types.ValOrErr(key, "no such key: %v", key)
}

// Contains implements traits.Container.
func (m *lazyVars) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if v != nil && types.IsUnknownOrError(v) {
		return v
	}
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (m *lazyVars) Size() ref.Val { return types.Int(len(m.p.vars)) }

// Iterator implements traits.Iterable: the variable names, in declaration order.
func (m *lazyVars) Iterator() traits.Iterator {
	names := make([]string, len(m.p.vars))
	for i, v := range m.p.vars {
		names[i] = v.name
	}
	return types.NewStringList(types.DefaultTypeAdapter, names).Iterator()
}

// ConvertToNative implements ref.Val; variables as a whole cannot leave CEL.
func (m *lazyVars) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return nil, fmt.Errorf("disallowed conversion from %q to %v", variablesTypeName, typeDesc)
}

// ConvertToType implements ref.Val.
func (m *lazyVars) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case lazyVarsType:
		return m
	case types.TypeType:
		return lazyVarsType
	}
	return types.NewErr("disallowed conversion from %q to %q", variablesTypeName, t.TypeName())
}

// Equal implements ref.Val: identity, as lazy.MapValue.
func (m *lazyVars) Equal(other ref.Val) ref.Val {
	o, ok := other.(*lazyVars)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return types.Bool(m == o)
}

// Type implements ref.Val.
func (m *lazyVars) Type() ref.Type { return lazyVarsType }

// Value implements ref.Val.
func (m *lazyVars) Value() any { return m }

// declTypeOf converts the output type of a variable's expression into the
// DeclType of its field in the variables type (as ValidatingAdmissionPolicy's
// composition does, whose converter is unexported). Unlike there, object
// types from the schema (known, by type name) are kept, so that
// variables.spec.replica is a compile error too when variables.spec is
// object.spec.
func declTypeOf(t *cel.Type, known map[string]*apiservercel.DeclType) *apiservercel.DeclType {
	if t == nil {
		return apiservercel.DynType
	}
	if t.Kind() == types.StructKind {
		if dt, ok := known[t.TypeName()]; ok {
			return dt
		}
		return apiservercel.DynType
	}
	switch t {
	case cel.AnyType:
		return apiservercel.AnyType
	case cel.BoolType:
		return apiservercel.BoolType
	case cel.BytesType:
		return apiservercel.BytesType
	case cel.DoubleType:
		return apiservercel.DoubleType
	case cel.DurationType:
		return apiservercel.DurationType
	case cel.IntType:
		return apiservercel.IntType
	case cel.NullType:
		return apiservercel.NullType
	case cel.StringType:
		return apiservercel.StringType
	case cel.TimestampType:
		return apiservercel.TimestampType
	case cel.UintType:
		return apiservercel.UintType
	}
	if t.HasTrait(traits.ContainerType) && t.HasTrait(traits.IndexerType) {
		switch params := t.Parameters(); len(params) {
		case 1:
			return apiservercel.NewListType(declTypeOf(params[0], known), -1)
		case 2:
			return apiservercel.NewMapType(declTypeOf(params[0], known), declTypeOf(params[1], known), -1)
		}
	}
	return apiservercel.DynType
}
