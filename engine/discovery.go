package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/faro-dev/faro/config"
)

// apiResource is one served resource that can be listed and watched.
type apiResource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// resourceIndex is a snapshot of what the API server serves. It is replaced
// whole on every discovery, never mutated.
type resourceIndex struct {
	byGVR     map[schema.GroupVersionResource]apiResource
	preferred map[string]string // group -> preferred version
}

// discover enumerates every served resource that supports list and watch,
// skipping subresources. A partial failure (one aggregated API down) still
// returns what was found, with the error.
func discover(d discovery.DiscoveryInterface) (*resourceIndex, error) {
	groups, lists, err := d.ServerGroupsAndResources()
	if lists == nil && err != nil {
		return nil, err
	}
	idx := &resourceIndex{byGVR: map[schema.GroupVersionResource]apiResource{}, preferred: map[string]string{}}
	for _, g := range groups {
		idx.preferred[g.Name] = g.PreferredVersion.Version
	}
	for _, list := range lists {
		gv, perr := schema.ParseGroupVersion(list.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			gvr := gv.WithResource(r.Name)
			idx.byGVR[gvr] = apiResource{GVR: gvr, Kind: r.Kind, Namespaced: r.Namespaced}
		}
	}
	return idx, err
}

// keepFailedGroups copies into idx what prev knew of the group versions
// whose discovery failed (err is a *discovery.ErrGroupDiscoveryFailed).
func (idx *resourceIndex) keepFailedGroups(prev *resourceIndex, err error) {
	var failed *discovery.ErrGroupDiscoveryFailed
	if prev == nil || !errors.As(err, &failed) {
		return
	}
	for gvr, r := range prev.byGVR {
		if _, ok := failed.Groups[gvr.GroupVersion()]; ok {
			idx.byGVR[gvr] = r
			if _, ok := idx.preferred[gvr.Group]; !ok {
				idx.preferred[gvr.Group] = prev.preferred[gvr.Group]
			}
		}
	}
}

// resolve finds the served resource a config reference names.
func (idx *resourceIndex) resolve(ref config.ResourceRef) (apiResource, error) {
	if ref.Version != "" {
		gvr := schema.GroupVersionResource{Group: ref.Group, Version: ref.Version, Resource: ref.Resource}
		if r, ok := idx.byGVR[gvr]; ok {
			return r, nil
		}
		return apiResource{}, fmt.Errorf("%s is not served by the API server", ref)
	}
	var found []apiResource
	for gvr, r := range idx.byGVR {
		if gvr.Resource != ref.Resource || (!ref.AnyGroup && gvr.Group != ref.Group) {
			continue
		}
		if gvr.Version == idx.preferred[gvr.Group] {
			found = append(found, r)
		}
	}
	slices.SortFunc(found, func(a, b apiResource) int { return strings.Compare(a.GVR.Group, b.GVR.Group) })
	switch {
	case len(found) == 0:
		return apiResource{}, fmt.Errorf("%s is not served by the API server", ref)
	case len(found) == 1 || found[0].GVR.Group == "":
		// The core group wins a bare name, as with kubectl.
		return found[0], nil
	default:
		var names []string
		for _, f := range found {
			names = append(names, f.GVR.Resource+"."+f.GVR.Group)
		}
		return apiResource{}, fmt.Errorf("%s is ambiguous: served as %s; name the group", ref, strings.Join(names, ", "))
	}
}

// count returns how many watchable resources the server serves.
func (idx *resourceIndex) count() int { return len(idx.byGVR) }

// gvrString renders a GVR the way log lines show it: v1/configmaps,
// apps/v1/deployments.
func gvrString(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Version + "/" + gvr.Resource
	}
	return gvr.Group + "/" + gvr.Version + "/" + gvr.Resource
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// isNamespaceResource reports whether gvr is core v1 namespaces.
func isNamespaceResource(gvr schema.GroupVersionResource) bool {
	return gvr.Group == "" && gvr.Resource == "namespaces"
}

// trigger asks the control loop for a rediscovery without blocking.
func (e *Engine) trigger() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) rediscover(ctx context.Context) {
	e.stats.Rediscovers.Add(1)
	defer e.opts.Progress.End(e.opts.Progress.Begin())
	idx, err := discover(e.disc)
	if idx == nil {
		e.log.Warn("discovery failed; keeping the last result", "error", err)
		return
	}
	if err != nil {
		// One API group failing (an aggregated API down) must not stop the
		// watches of its resources: keep what the last discovery knew of it.
		e.log.Warn("discovery incomplete; keeping the last known resources of the failed groups", "error", err)
		e.mu.Lock()
		idx.keepFailedGroups(e.index, err)
		e.mu.Unlock()
	}
	e.setIndex(idx)
	e.reconcile(ctx)
}
