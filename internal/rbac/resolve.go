package rbac

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/faro-dev/faro/config"
)

// Offline resolves resources from the config alone. The group is the one
// written (a bare name like `configmaps` is taken as the core group, as
// Faro prefers it when the core group serves the name); the scope is the
// entry's `scope` when it says Cluster, else that of a built-in
// cluster-scoped resource, else Namespaced. For a bare name of another
// group, write group/version/resource or resolve with Discovery.
type Offline struct{}

// Resolve implements Resolver.
func (Offline) Resolve(r config.Rule) (Resource, error) {
	res := Resource{Group: r.Resource.Group, Resource: r.Resource.Resource}
	if r.Resource.AnyGroup {
		res.Group = ""
	}
	res.Namespaced = r.Scope != config.ScopeCluster && !clusterScoped[schema.GroupResource{Group: res.Group, Resource: res.Resource}]
	return res, nil
}

// clusterScoped are Kubernetes' built-in cluster-scoped resources that
// can be listed and watched.
var clusterScoped = map[schema.GroupResource]bool{}

func init() {
	for group, names := range map[string][]string{
		"":                             {"namespaces", "nodes", "persistentvolumes", "componentstatuses"},
		"admissionregistration.k8s.io": {"mutatingwebhookconfigurations", "validatingwebhookconfigurations", "validatingadmissionpolicies", "validatingadmissionpolicybindings", "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"},
		"apiextensions.k8s.io":         {"customresourcedefinitions"},
		"apiregistration.k8s.io":       {"apiservices"},
		"certificates.k8s.io":          {"certificatesigningrequests", "clustertrustbundles"},
		"flowcontrol.apiserver.k8s.io": {"flowschemas", "prioritylevelconfigurations"},
		"networking.k8s.io":            {"ingressclasses", "ipaddresses", "servicecidrs"},
		"node.k8s.io":                  {"runtimeclasses"},
		"rbac.authorization.k8s.io":    {"clusterroles", "clusterrolebindings"},
		"resource.k8s.io":              {"deviceclasses", "resourceslices"},
		"scheduling.k8s.io":            {"priorityclasses"},
		"storage.k8s.io":               {"csidrivers", "csinodes", "storageclasses", "volumeattachments", "volumeattributesclasses"},
		"storagemigration.k8s.io":      {"storageversionmigrations"},
		"internal.apiserver.k8s.io":    {"storageversions"},
	} {
		for _, n := range names {
			clusterScoped[schema.GroupResource{Group: group, Resource: n}] = true
		}
	}
}

// Discovery resolves resources as the engine does, against what the API
// server serves: a bare name prefers the core group and is an error when
// several other groups serve it; the scope is the server's. A resource the
// server does not serve (yet: a CRD to come) is resolved Offline.
type Discovery struct {
	served map[schema.GroupResource]bool // -> namespaced
	groups map[string][]string           // resource -> groups serving it, sorted
}

// NewDiscovery reads the server's resources once.
func NewDiscovery(d discovery.DiscoveryInterface) (*Discovery, error) {
	_, lists, err := d.ServerGroupsAndResources()
	if lists == nil && err != nil {
		return nil, fmt.Errorf("discover API resources: %w", err)
	}
	out := &Discovery{served: map[schema.GroupResource]bool{}, groups: map[string][]string{}}
	for _, list := range lists {
		gv, perr := schema.ParseGroupVersion(list.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") {
				continue
			}
			gr := gv.WithResource(r.Name).GroupResource()
			if _, ok := out.served[gr]; !ok {
				out.groups[r.Name] = append(out.groups[r.Name], gr.Group)
			}
			out.served[gr] = r.Namespaced
		}
	}
	for _, gs := range out.groups {
		slices.Sort(gs)
	}
	return out, nil
}

// Resolve implements Resolver.
func (d *Discovery) Resolve(r config.Rule) (Resource, error) {
	group := r.Resource.Group
	if r.Resource.AnyGroup {
		switch gs := d.groups[r.Resource.Resource]; {
		case len(gs) == 0:
			return Offline{}.Resolve(r)
		case len(gs) == 1 || gs[0] == "":
			group = gs[0]
		default:
			return Resource{}, fmt.Errorf("%s is ambiguous: served by the groups %s; name the group", r.Resource, strings.Join(gs, ", "))
		}
	}
	namespaced, ok := d.served[schema.GroupResource{Group: group, Resource: r.Resource.Resource}]
	if !ok {
		return Offline{}.Resolve(r)
	}
	return Resource{Group: group, Resource: r.Resource.Resource, Namespaced: namespaced}, nil
}
