package celpred

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"github.com/google/cel-go/cel"
	"k8s.io/apimachinery/pkg/runtime/schema"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/common"
	"k8s.io/apiserver/pkg/cel/openapi"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// SchemaResolver finds the OpenAPI v3 schema of a kind. It returns a nil
// schema and a nil error when the server publishes none for the kind (the
// caller then compiles with dynamic typing).
type SchemaResolver interface {
	ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error)
}

// NewSchemaResolver returns a SchemaResolver that reads the OpenAPI v3
// document of the kind's group-version from the server's discovery endpoint
// (/openapi/v3/api/v1, /openapi/v3/apis/GROUP/VERSION), the same way the API
// server's admission policy type checker does (it wraps
// k8s.io/apiserver/pkg/cel/openapi/resolver.ClientDiscoveryResolver). It works
// for built-in kinds and for CRDs with structural schemas. $refs are inlined.
//
// Each call fetches the group-version document (client-go caches it only if d
// is a cached discovery client); resolve once per config load, not per event.
func NewSchemaResolver(d discovery.DiscoveryInterface) SchemaResolver {
	return &discoveryResolver{r: &resolver.ClientDiscoveryResolver{Discovery: d}}
}

type discoveryResolver struct {
	r resolver.SchemaResolver
}

func (d *discoveryResolver) ResolveSchema(gvk schema.GroupVersionKind) (*spec.Schema, error) {
	s, err := d.r.ResolveSchema(gvk)
	if errors.Is(err, resolver.ErrSchemaNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolving the OpenAPI schema of %s: %w", gvk, err)
	}
	return s, nil
}

// objectDeclType converts a resource's OpenAPI schema into the CEL type of
// object/oldObject, or returns nil when nothing useful can be typed (the
// caller falls back to dyn).
//
// The conversion is k8s.io/apiserver/pkg/cel/common.SchemaDeclType, the one
// CRD validation rules and admission policy type checking use, applied to a
// view of the schema (runtimeView) that describes the values Faro binds at
// run time: plain unstructured JSON, exactly what a ValidatingAdmissionPolicy
// sees. See runtimeView for the differences.
func objectDeclType(s *spec.Schema, typeName string) *apiservercel.DeclType {
	if s == nil {
		return nil
	}
	dt := common.SchemaDeclType(view(s), true)
	if dt == nil || !dt.IsObject() {
		return nil
	}
	return dt.MaybeAssignTypeName(typeName)
}

// runtimeView adapts a spec.Schema for common.SchemaDeclType so that the
// declared CEL types match the run-time representation of unstructured
// objects (strings, int64, float64, bool, null, []any, map[string]any):
//
//   - format byte/date/date-time/duration: declared as string, not
//     bytes/timestamp/duration, since the value is the JSON string (as in
//     ValidatingAdmissionPolicy, where metadata.creationTimestamp is a string).
//   - type number: dyn, since unstructured JSON holds whole numbers as int64
//     and others as float64.
//   - schemas without a single type (Quantity, IntOrString in the built-in
//     OpenAPI v3 are oneOf without type), x-kubernetes-preserve-unknown-fields,
//     objects without properties and additionalProperties (RawExtension,
//     FieldsV1, the placeholder the resolver puts in place of a recursive
//     $ref): dyn, since anything may be there.
//   - objects with a property whose name CEL would have to escape (dashes,
//     dots, slashes): dyn, so that obj['my-field'] keeps working as in an
//     admission policy.
//
// dyn is expressed the only way SchemaDeclType offers: as
// x-kubernetes-int-or-string, which it maps to the CEL dyn type.
type runtimeView struct {
	*openapi.Schema
}

func view(s *spec.Schema) *runtimeView {
	return &runtimeView{Schema: &openapi.Schema{Schema: s}}
}

func (v *runtimeView) raw() *spec.Schema { return v.Schema.Schema }

// isDyn reports whether the node must be typed dyn (see runtimeView).
func (v *runtimeView) isDyn() bool {
	s := v.raw()
	if v.Schema.IsXIntOrString() || v.Schema.IsXPreserveUnknownFields() {
		return true
	}
	if len(s.Type) != 1 {
		return true
	}
	switch s.Type[0] {
	case "number":
		return true
	case "object":
		hasAdditional := s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil
		if len(s.Properties) == 0 && !hasAdditional {
			return true
		}
		for name := range s.Properties {
			if !plainFieldName(name) {
				return true
			}
		}
	case "array":
		if s.Items == nil || s.Items.Schema == nil {
			return true
		}
	}
	return false
}

// plainFieldName reports whether a property can be selected as obj.name
// without CEL escaping. Reserved words (namespace, ...) are fine: the
// Kubernetes type provider recognizes them as field names.
func plainFieldName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_':
			if i > 0 && name[i-1] == '_' {
				return false
			}
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (v *runtimeView) IsXIntOrString() bool { return v.isDyn() }

func (v *runtimeView) Format() string {
	switch f := v.raw().Format; f {
	case "byte", "date", "date-time", "duration":
		return ""
	default:
		return f
	}
}

func (v *runtimeView) Items() common.Schema {
	s := v.raw()
	if s.Items == nil || s.Items.Schema == nil {
		return nil
	}
	return view(s.Items.Schema)
}

func (v *runtimeView) Properties() map[string]common.Schema {
	s := v.raw()
	if s.Properties == nil {
		return nil
	}
	res := make(map[string]common.Schema, len(s.Properties))
	for name := range s.Properties {
		p := s.Properties[name]
		res[name] = view(&p)
	}
	return res
}

func (v *runtimeView) AdditionalProperties() common.SchemaOrBool {
	s := v.raw()
	if s.AdditionalProperties == nil {
		return nil
	}
	return &runtimeViewOrBool{s.AdditionalProperties}
}

// WithTypeAndObjectMeta makes apiVersion and kind strings and, unlike the
// apiserver's version (which exposes only metadata.name and generateName, as
// CRD validation rules see them), keeps a typed metadata as published (the
// OpenAPI v3 documents carry the full ObjectMeta) or declares it dyn when the
// schema does not describe it: Faro's objects always carry their full
// metadata.
func (v *runtimeView) WithTypeAndObjectMeta() common.Schema {
	s := v.raw()
	str := func(name string) bool { p, ok := s.Properties[name]; return ok && p.Type.Contains("string") }
	meta, hasMeta := s.Properties["metadata"]
	if str("kind") && str("apiVersion") && hasMeta && len(meta.Properties) > 0 {
		return v
	}
	result := *s
	props := make(map[string]spec.Schema, len(s.Properties)+3)
	for k, p := range s.Properties {
		props[k] = p
	}
	props["kind"] = *spec.StringProperty()
	props["apiVersion"] = *spec.StringProperty()
	if !hasMeta || len(meta.Properties) == 0 {
		dyn := spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{"object"}}}
		dyn.AddExtension("x-kubernetes-preserve-unknown-fields", true)
		props["metadata"] = dyn
	}
	result.Properties = props
	return view(&result)
}

type runtimeViewOrBool struct {
	sb *spec.SchemaOrBool
}

func (b *runtimeViewOrBool) Schema() common.Schema {
	if b.sb.Schema == nil {
		return nil
	}
	return view(b.sb.Schema)
}

func (b *runtimeViewOrBool) Allows() bool { return b.sb.Allows }

// schemaCache keeps, per *spec.Schema, the object type and the environment
// declaring object/oldObject with it: building them takes ~10 ms for a
// Deployment, and a config typically has several entries per resource. An
// entry lives as long as its schema is reachable (weak key, removed by a
// cleanup), so reloads, which resolve fresh schemas, do not accumulate
// entries. Schemas are treated as immutable.
type schemaCache struct {
	mu sync.Mutex
	m  map[weak.Pointer[spec.Schema]]*schemaEnv
}

type schemaEnv struct {
	once    sync.Once
	objType *apiservercel.DeclType // nil: nothing to type, use dyn
	env     *cel.Env               // base + object, oldObject
	noVars  *cel.Env               // env + empty variables
	err     error
}

func (c *schemaCache) get(s *spec.Schema, base *cel.Env) *schemaEnv {
	key := weak.Make(s)
	c.mu.Lock()
	e, ok := c.m[key]
	if !ok {
		e = &schemaEnv{}
		c.m[key] = e
		runtime.AddCleanup(s, c.remove, key)
	}
	c.mu.Unlock()
	e.once.Do(func() {
		e.objType = objectDeclType(s, objectTypeName)
		if e.objType == nil {
			return
		}
		if e.env, e.err = withObjects(base, e.objType); e.err != nil {
			return
		}
		e.noVars, e.err = withVariables(e.env, emptyVariablesType)
	})
	return e
}

func (c *schemaCache) remove(key weak.Pointer[spec.Schema]) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}
