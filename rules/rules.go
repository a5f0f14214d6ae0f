// Package rules is the rule engine stage of Faro's pipeline: it compiles the
// normalized config entries (regexes, label selectors, CEL predicates) once,
// into an immutable Set, and decides which entries an event matches. A Set is
// shared by every worker; a reload compiles a new one and swaps it in whole.
package rules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/celpred"
	"github.com/faro-dev/faro/internal/object"
)

// SchemaSource finds the OpenAPI schema of a configured resource so that CEL
// expressions are type-checked against it. It returns nil when the resource
// has no published schema (or no cluster is at hand): CEL then falls back to
// dynamic typing.
type SchemaSource interface {
	SchemaFor(ref config.ResourceRef) *spec.Schema
}

// Options configures Compile.
type Options struct {
	// CEL compiles the entries' expressions; required when any entry has one.
	CEL *celpred.Compiler
	// Schemas is optional.
	Schemas SchemaSource
	// Previous, when set, is the rule set being replaced: an entry whose
	// definition and schema did not change is carried over as compiled,
	// which makes a reload cost what changed, not the size of the file.
	Previous *Set
}

// Rule is one compiled config entry.
type Rule struct {
	config.Rule
	// Key identifies the entry by its definition, not its place in the
	// file: two entries with the same Key select the same events. Inserting
	// an entry above another changes the other's ID, not its Key. The
	// reload diff and the engine (which rules are new to a resource) use it.
	Key string

	namespaces []*regexp.Regexp // nil entries match everything
	name       *regexp.Regexp
	selector   labels.Selector
	pred       *celpred.Predicate
	schema     *spec.Schema // what pred was type-checked against
}

// Set is an immutable, compiled rule set.
type Set struct {
	Config *config.Config
	Rules  []*Rule
}

// Compile compiles every rule of cfg. All problems are returned at once, as
// config.Errors with the place of each.
func Compile(cfg *config.Config, opts Options) (*Set, error) {
	set := &Set{Config: cfg}
	var errs config.Errors
	prev := map[string]*Rule{}
	if opts.Previous != nil {
		for _, r := range opts.Previous.Rules {
			prev[r.ID] = r
		}
	}
	for _, r := range cfg.Rules {
		key := keyOf(r)
		if old, ok := prev[r.ID]; ok && old.Key == key && old.schema == schemaFor(opts, r) {
			set.Rules = append(set.Rules, old)
			continue
		}
		cr := &Rule{Rule: r, Key: key, selector: labels.Everything()}
		for _, p := range r.NamespacePatterns {
			re, err := config.CompilePattern(p)
			if err != nil {
				errs = append(errs, cfg.Errorf(r.ID, "namespace pattern %q: %v", p, err))
			}
			cr.namespaces = append(cr.namespaces, re)
		}
		var err error
		if cr.name, err = config.CompilePattern(r.NamePattern); err != nil {
			errs = append(errs, cfg.Errorf(r.ID+".name_pattern", "%v", err))
		}
		if cr.selector, err = labels.Parse(r.LabelSelector); err != nil {
			errs = append(errs, cfg.Errorf(r.ID+".label_selector", "%v", err))
		}
		if len(r.CEL) > 0 || len(r.Variables) > 0 {
			errs = append(errs, cr.compileCEL(cfg, opts)...)
		}
		set.Rules = append(set.Rules, cr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return set, nil
}

// keyOf derives a rule's Key from its definition without its ID.
func keyOf(r config.Rule) string {
	r.ID = ""
	def, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("rules: a config.Rule must encode as JSON: %v", err)) // plain data: cannot happen
	}
	sum := sha256.Sum256(def)
	return hex.EncodeToString(sum[:16])
}

func (r *Rule) compileCEL(cfg *config.Config, opts Options) config.Errors {
	if opts.CEL == nil {
		return config.Errors{cfg.Errorf(r.ID+".cel", "CEL is not available")}
	}
	src := celpred.Source{Expressions: r.CEL}
	for _, v := range r.Variables {
		src.Variables = append(src.Variables, celpred.Variable{Name: v.Name, Expression: v.Expression})
	}
	schema := schemaFor(opts, r.Rule)
	pred, issues := opts.CEL.Compile(r.ID, src, schema)
	var errs config.Errors
	for _, is := range issues {
		errs = append(errs, cfg.Errorf(is.Path, "%s", is.Message))
	}
	r.pred, r.schema = pred, schema
	return errs
}

// schemaFor returns the schema r's CEL is checked against; nil without CEL
// or without a schema source.
func schemaFor(opts Options, r config.Rule) *spec.Schema {
	if opts.Schemas == nil || (len(r.CEL) == 0 && len(r.Variables) == 0) {
		return nil
	}
	return opts.Schemas.SchemaFor(r.Resource)
}

// Event is what the rule engine looks at: one change to one object.
type Event struct {
	Type config.EventType
	// Object is the object as delivered; for DELETED its last known state.
	Object *object.Object
	// OldObject is the previous state on UPDATED, nil otherwise.
	OldObject *object.Object
	// Initial marks ADDED events for objects that existed when the watch
	// started.
	Initial bool
	// IsNamespace is set when Object is a core v1 Namespace: namespace
	// patterns then match its own name.
	IsNamespace bool

	// Built on first use, shared by every rule with the same view (see
	// Objects): the decoded objects, cel of the redacted view, celRevealed
	// of a Secret as is.
	decoded               bool
	obj, old              *unstructured.Unstructured
	decodeErr             error
	cel, celRevealed      *celpred.Input
	redacted, redactedOld *unstructured.Unstructured
}

// Matches reports whether r selects ev. The cheap filters (event type,
// namespace and name patterns, labels) run first; CEL runs only when they
// pass. A CEL evaluation error is returned with false: the caller counts it
// and treats it as no match.
func (r *Rule) Matches(ctx context.Context, ev *Event) (bool, error) {
	if !slices.Contains(r.EventTypes, ev.Type) || (ev.Initial && !r.InitialEvents) {
		return false, nil
	}
	ns := ev.Object.Namespace
	if ns == "" && ev.IsNamespace {
		ns = ev.Object.Name
	}
	if ns != "" && len(r.namespaces) > 0 && !slices.ContainsFunc(r.namespaces, func(re *regexp.Regexp) bool {
		return re == nil || re.MatchString(ns)
	}) {
		return false, nil
	}
	if r.name != nil && !r.name.MatchString(ev.Object.Name) {
		return false, nil
	}
	if !r.selector.Empty() && !r.selector.Matches(ev.Object.LabelSet()) {
		return false, nil
	}
	if r.pred == nil {
		return true, nil
	}
	in, err := ev.celInput(r)
	if err != nil {
		return false, fmt.Errorf("%s: %w", r.ID, err)
	}
	ok, err := r.pred.Eval(ctx, in)
	if err != nil {
		return false, fmt.Errorf("%s: CEL: %w", r.ID, err)
	}
	return ok, nil
}

// ReadsBody reports whether r reads more of an object than its metadata:
// it has a CEL filter or plugins. The engine caches only the metadata of a
// resource that none of its rules reads more of.
func (r *Rule) ReadsBody() bool { return r.pred != nil || len(r.Plugins) > 0 }

// Selector returns the rule's parsed label selector.
func (r *Rule) Selector() labels.Selector { return r.selector }
