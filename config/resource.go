package config

import (
	"fmt"
	"regexp"
	"strings"
)

// ResourceRef is a resource as written in config, before discovery resolves
// it. Accepted spellings:
//
//	v1/configmaps          core group, version v1
//	apps/v1/deployments    group/version/resource
//	configmaps             any group (core preferred), the server's preferred version
//	deployments.apps       resource.group, the server's preferred version
type ResourceRef struct {
	Group    string
	Version  string // "" = the server's preferred version
	Resource string
	// AnyGroup is set when only a resource name was given.
	AnyGroup bool
}

var (
	versionRe  = regexp.MustCompile(`^v[0-9]+((alpha|beta)[0-9]+)?$`)
	dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	groupRe    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ParseResourceRef parses one of the accepted spellings.
func ParseResourceRef(s string) (ResourceRef, error) {
	parts := strings.Split(s, "/")
	var r ResourceRef
	switch len(parts) {
	case 1:
		name, group, dotted := strings.Cut(s, ".")
		r = ResourceRef{Resource: name, Group: group, AnyGroup: !dotted}
		if dotted && !groupRe.MatchString(group) {
			return r, fmt.Errorf("%q: invalid API group %q", s, group)
		}
	case 2:
		if !versionRe.MatchString(parts[0]) {
			return r, fmt.Errorf("%q: %q is not a version; write group/version/resource (e.g. apps/v1/deployments) or resource.group (deployments.apps)", s, parts[0])
		}
		r = ResourceRef{Version: parts[0], Resource: parts[1]}
	case 3:
		if !groupRe.MatchString(parts[0]) {
			return r, fmt.Errorf("%q: invalid API group %q", s, parts[0])
		}
		if !versionRe.MatchString(parts[1]) {
			return r, fmt.Errorf("%q: invalid version %q (e.g. v1, v1beta1)", s, parts[1])
		}
		r = ResourceRef{Group: parts[0], Version: parts[1], Resource: parts[2]}
	default:
		return r, fmt.Errorf("%q: too many slashes; write v1/configmaps or apps/v1/deployments", s)
	}
	if !dnsLabelRe.MatchString(r.Resource) {
		return r, fmt.Errorf("%q: invalid resource name %q (plural, lower case, e.g. configmaps)", s, r.Resource)
	}
	return r, nil
}

// String renders the reference the way log lines show resources:
// v1/configmaps, apps/v1/deployments; unresolved parts are left out.
func (r ResourceRef) String() string {
	switch {
	case r.Version == "" && r.AnyGroup:
		return r.Resource
	case r.Version == "":
		return r.Resource + "." + r.Group
	case r.Group == "":
		return r.Version + "/" + r.Resource
	default:
		return r.Group + "/" + r.Version + "/" + r.Resource
	}
}

var celIdentRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
