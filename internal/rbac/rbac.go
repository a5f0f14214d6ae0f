// Package rbac derives the least-privilege RBAC a Faro config needs, for
// `faro rbac` and the deploy/ manifests. It sits beside the pipeline: it
// reads the same normalized rules the engine watches and grants exactly
// what those watches (and Faro's own discovery, CRD watch and leader
// election) call.
//
// A resource is granted get, list and watch. It gets a Role and RoleBinding
// in each namespace when it is namespaced and every rule on it names only
// literal namespaces (Faro then watches just those namespaces); otherwise
// a ClusterRole grants it, since Faro watches it cluster-wide.
package rbac

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/faro-dev/faro/config"
)

// Resource is a configured resource as RBAC names it.
type Resource struct {
	Group, Resource string
	Namespaced      bool
}

// Resolver finds the API group and scope of a rule's resource.
type Resolver interface {
	Resolve(r config.Rule) (Resource, error)
}

// Options configures For.
type Options struct {
	// ServiceAccountNamespace and ServiceAccountName name the account Faro
	// runs as; both are required.
	ServiceAccountNamespace, ServiceAccountName string
	// LeaderElect grants the coordination.k8s.io Leases of leader election
	// in the service account's namespace.
	LeaderElect bool
	// Resolver resolves resources; default Offline.
	Resolver Resolver
}

func (o *Options) validate() error {
	var errs []error
	for what, v := range map[string]string{"namespace": o.ServiceAccountNamespace, "name": o.ServiceAccountName} {
		if msgs := validation.IsDNS1123Subdomain(v); v == "" || len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("service account %s %q is not valid: %s", what, v, strings.Join(msgs, "; ")))
		}
	}
	if o.Resolver == nil {
		o.Resolver = Offline{}
	}
	return errors.Join(errs...)
}

// readVerbs are what an informer needs.
var readVerbs = []string{"get", "list", "watch"}

// Grants is the RBAC of one config: a ClusterRole for what Faro reads
// cluster-wide, and a Role per namespace for what it reads only there.
type Grants struct {
	ClusterRole        rbacv1.ClusterRole
	ClusterRoleBinding rbacv1.ClusterRoleBinding
	Roles              []rbacv1.Role        // by namespace
	RoleBindings       []rbacv1.RoleBinding // one per Role, same order
	// Why says, per granted resource, which rules need it, for the
	// comment heading the YAML.
	Why []string
}

// For computes the grants cfg needs.
func For(cfg *config.Config, opts Options) (*Grants, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	type use struct {
		res        Resource
		namespaces []string // nil: cluster-wide
		rules      []string
	}
	uses := map[Resource]*use{}
	var order []Resource
	var errs config.Errors
	for _, r := range cfg.Rules {
		res, err := opts.Resolver.Resolve(r)
		if err != nil {
			errs = append(errs, cfg.Errorf(r.ID, "%v", err))
			continue
		}
		key := Resource{Group: res.Group, Resource: res.Resource}
		u, ok := uses[key]
		if !ok {
			u = &use{res: res, namespaces: []string{}}
			uses[key] = u
			order = append(order, key)
		}
		u.res.Namespaced = u.res.Namespaced || res.Namespaced
		u.rules = append(u.rules, r.ID)
		// As the engine watches: only literal namespaces narrow a watch,
		// and one rule without them widens it to the cluster.
		if !res.Namespaced || len(r.NamespacePatterns) == 0 || !all(r.NamespacePatterns, config.IsLiteralPattern) {
			u.namespaces = nil
		} else if u.namespaces != nil {
			u.namespaces = append(u.namespaces, r.NamespacePatterns...)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}

	name := opts.ServiceAccountNamespace + ":" + opts.ServiceAccountName
	labels := map[string]string{"app.kubernetes.io/name": "faro"}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: opts.ServiceAccountNamespace, Name: opts.ServiceAccountName}}
	g := &Grants{}
	cluster := []Resource{{Group: "apiextensions.k8s.io", Resource: "customresourcedefinitions"}}
	byNS := map[string][]Resource{}
	g.Why = append(g.Why, "apiextensions.k8s.io customresourcedefinitions, cluster-wide: CRD detection")
	for _, key := range order {
		u := uses[key]
		rules := strings.Join(u.rules, ", ")
		if u.namespaces == nil {
			if !slices.Contains(cluster, key) {
				cluster = append(cluster, key)
			}
			g.Why = append(g.Why, fmt.Sprintf("%s, cluster-wide: %s", describe(key), rules))
			continue
		}
		slices.Sort(u.namespaces)
		u.namespaces = slices.Compact(u.namespaces)
		for _, ns := range u.namespaces {
			byNS[ns] = append(byNS[ns], key)
		}
		g.Why = append(g.Why, fmt.Sprintf("%s in %s: %s", describe(key), strings.Join(u.namespaces, ", "), rules))
	}
	if opts.LeaderElect {
		ns := opts.ServiceAccountNamespace
		g.Why = append(g.Why, fmt.Sprintf("coordination.k8s.io leases in %s: leader election (get, create, update)", ns))
		if _, ok := byNS[ns]; !ok {
			byNS[ns] = nil
		}
	}

	g.ClusterRole = rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Rules: append([]rbacv1.PolicyRule{{
			// Discovery, and the OpenAPI schemas CEL is type-checked against.
			NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/openapi/v3", "/openapi/v3/*"},
			Verbs:           []string{"get"},
		}}, readRules(cluster)...),
	}
	g.ClusterRoleBinding = rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   subject,
	}
	namespaces := make([]string, 0, len(byNS))
	for ns := range byNS {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	for _, ns := range namespaces {
		rules := readRules(byNS[ns])
		if opts.LeaderElect && ns == opts.ServiceAccountNamespace {
			rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}})
		}
		meta := metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
		g.Roles = append(g.Roles, rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta,
			Rules:      rules,
		})
		g.RoleBindings = append(g.RoleBindings, rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   subject,
		})
	}
	return g, nil
}

// readRules grants get, list and watch on rs, one rule per API group, the
// core group first, resources sorted.
func readRules(rs []Resource) []rbacv1.PolicyRule {
	byGroup := map[string][]string{}
	for _, r := range rs {
		byGroup[r.Group] = append(byGroup[r.Group], r.Resource)
	}
	groups := make([]string, 0, len(byGroup))
	for g := range byGroup {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	var out []rbacv1.PolicyRule
	for _, g := range groups {
		res := byGroup[g]
		slices.Sort(res)
		out = append(out, rbacv1.PolicyRule{APIGroups: []string{g}, Resources: slices.Compact(res), Verbs: readVerbs})
	}
	return out
}

func describe(r Resource) string {
	return cmp.Or(r.Group, "core") + " " + r.Resource
}

func all(ss []string, f func(string) bool) bool {
	return !slices.ContainsFunc(ss, func(s string) bool { return !f(s) })
}

// Objects returns every object, in the order kubectl should apply them.
func (g *Grants) Objects() []runtime.Object {
	objs := []runtime.Object{&g.ClusterRole, &g.ClusterRoleBinding}
	for i := range g.Roles {
		objs = append(objs, &g.Roles[i], &g.RoleBindings[i])
	}
	return objs
}

// YAML renders the grants as a multi-document YAML stream that
// `kubectl apply -f -` takes, headed by a comment saying what each grant is
// for.
func (g *Grants) YAML(header string) ([]byte, error) {
	var b bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	b.WriteString("#\n# Grants (get, list, watch unless said otherwise):\n")
	for _, w := range g.Why {
		fmt.Fprintf(&b, "#   %s\n", w)
	}
	b.WriteString("#   discovery (/api, /apis) and OpenAPI v3 schemas: resolving resources, type-checking CEL\n")
	for _, obj := range g.Objects() {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, err
		}
		unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
		out, err := yaml.Marshal(m)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(out)
	}
	return b.Bytes(), nil
}
