package config

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

var logLevels = []string{"debug", "info", "warn", "error"}

// validate checks every value offline and fills c.Rules; each problem goes to
// fail with its path.
func (c *Config) validate(fail func(int, string, string)) {
	bad := func(path, format string, args ...any) {
		fail(c.lineOf(path), path, fmt.Sprintf(format, args...))
	}
	if c.LogLevel != "" && !slices.Contains(logLevels, strings.ToLower(c.LogLevel)) {
		bad("log_level", "unknown level %q (one of %s)", c.LogLevel, strings.Join(logLevels, ", "))
	}
	if c.AutoShutdownSec < 0 {
		bad("auto_shutdown_sec", "must be 0 (run forever) or positive, got %d", c.AutoShutdownSec)
	}
	if c.Workers < 0 {
		bad("workers", "must be positive, got %d", c.Workers)
	}
	if c.MaxRetries != nil && *c.MaxRetries < 0 {
		bad("max_retries", "must be 0 or positive, got %d", *c.MaxRetries)
	}
	if c.MaxPendingPerObject < 0 || c.MaxPendingPerObject == 1 {
		bad("max_pending_per_object", "must be at least 2 (0 for the default, 1000), got %d", c.MaxPendingPerObject)
	}

	plugins := map[string]bool{}
	for i, p := range c.Plugins {
		path := fmt.Sprintf("plugins[%d]", i)
		switch {
		case p.Name == "":
			bad(path+".name", "is required")
		case plugins[p.Name]:
			bad(path+".name", "plugin %q is declared twice", p.Name)
		}
		plugins[p.Name] = true
		if p.Path == "" {
			bad(path+".path", "is required (a .wasm file, relative to the config file)")
		}
		if p.Timeout < 0 {
			bad(path+".timeout", "must be positive")
		}
		if _, err := p.MemoryLimitBytes(); err != nil {
			bad(path+".memory_limit", "invalid quantity %q: %v (e.g. 64Mi)", p.MemoryLimit, err)
		}
		if _, err := p.ConfigJSON(); err != nil {
			bad(path+".config", "cannot be represented as JSON: %v", err)
		}
		for j, h := range p.AllowedHosts {
			if !validHost(h) {
				bad(fmt.Sprintf("%s.allowed_hosts[%d]", path, j), "%q is not a host or host:port", h)
			}
		}
	}

	for i, e := range c.Namespaces {
		path := fmt.Sprintf("namespaces[%d]", i)
		checkPattern(bad, path+".name_pattern", e.NamePattern)
		if len(e.Resources) == 0 {
			bad(path+".resources", "is required: which resources to watch in these namespaces")
		}
		keys := make([]string, 0, len(e.Resources))
		for k := range e.Resources {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, gvr := range keys {
			rpath := fmt.Sprintf("%s.resources[%q]", path, gvr)
			ref, err := ParseResourceRef(gvr)
			if err != nil {
				bad(rpath, "%v", err)
			}
			var ns []string
			if e.NamePattern != "" {
				ns = []string{e.NamePattern}
			}
			c.addRule(bad, plugins, rpath, ref, "", ns, e.Resources[gvr])
		}
	}

	for i, e := range c.Resources {
		path := fmt.Sprintf("resources[%d]", i)
		ref, err := ParseResourceRef(e.GVR)
		switch {
		case e.GVR == "":
			bad(path+".gvr", "is required (e.g. v1/configmaps, apps/v1/deployments)")
		case err != nil:
			bad(path+".gvr", "%v", err)
		}
		switch e.Scope {
		case "", ScopeNamespaced:
		case ScopeCluster:
			if len(e.NamespacePatterns) > 0 {
				bad(path+".namespace_patterns", "a Cluster-scoped resource has no namespace; remove namespace_patterns")
			}
		default:
			bad(path+".scope", "unknown scope %q (Namespaced or Cluster)", e.Scope)
		}
		for j, p := range e.NamespacePatterns {
			checkPattern(bad, fmt.Sprintf("%s.namespace_patterns[%d]", path, j), p)
		}
		c.addRule(bad, plugins, path, ref, e.Scope, e.NamespacePatterns, e.Filter)
	}
}

// addRule validates one resource's filter and appends its normalized Rule.
func (c *Config) addRule(bad func(string, string, ...any), plugins map[string]bool, path string, ref ResourceRef, scope string, ns []string, f Filter) {
	checkPattern(bad, path+".name_pattern", f.NamePattern)
	if _, err := labels.Parse(f.LabelSelector); err != nil {
		bad(path+".label_selector", "invalid label selector %q: %v", f.LabelSelector, err)
	}
	events := AllEventTypes
	if f.EventTypes != nil {
		events = nil
		if len(f.EventTypes) == 0 {
			bad(path+".event_types", "is empty: list at least one of ADDED, UPDATED, DELETED, or leave it out for all")
		}
		for j, t := range f.EventTypes {
			et := EventType(t)
			switch {
			case !slices.Contains(AllEventTypes, et):
				bad(fmt.Sprintf("%s.event_types[%d]", path, j), "unknown event type %q (ADDED, UPDATED or DELETED)", t)
			case slices.Contains(events, et):
				bad(fmt.Sprintf("%s.event_types[%d]", path, j), "%s is listed twice", t)
			default:
				events = append(events, et)
			}
		}
	}
	for j, expr := range f.CEL {
		if strings.TrimSpace(expr) == "" {
			bad(fmt.Sprintf("%s.cel[%d]", path, j), "is empty")
		}
	}
	names := map[string]bool{}
	for j, v := range f.Variables {
		vpath := fmt.Sprintf("%s.variables[%d]", path, j)
		switch {
		case !celIdentRe.MatchString(v.Name):
			bad(vpath+".name", "%q is not a valid identifier", v.Name)
		case names[v.Name]:
			bad(vpath+".name", "variable %q is declared twice", v.Name)
		}
		names[v.Name] = true
		if strings.TrimSpace(v.Expression) == "" {
			bad(vpath+".expression", "is required")
		}
	}
	for j, p := range f.Plugins {
		if !plugins[p] {
			bad(fmt.Sprintf("%s.plugins[%d]", path, j), "unknown plugin %q (declare it under plugins:)", p)
		}
	}
	switch f.Secrets {
	case "", SecretsRedact, SecretsReveal:
	default:
		bad(path+".secrets", "unknown value %q (redact, the default, or reveal)", f.Secrets)
	}
	if f.Secrets != "" && (ref.Resource != "secrets" || ref.Group != "") {
		bad(path+".secrets", "applies only to v1/secrets, not %s", ref)
	}
	initial := true
	if f.InitialEvents != nil {
		initial = *f.InitialEvents
	}
	c.Rules = append(c.Rules, Rule{
		ID:                path,
		Resource:          ref,
		Scope:             scope,
		NamespacePatterns: ns,
		NamePattern:       f.NamePattern,
		LabelSelector:     f.LabelSelector,
		EventTypes:        events,
		InitialEvents:     initial,
		CEL:               f.CEL,
		Variables:         f.Variables,
		Plugins:           f.Plugins,
		RevealSecrets:     f.Secrets == SecretsReveal,
	})
}

func checkPattern(bad func(string, string, ...any), path, p string) {
	if _, err := CompilePattern(p); err != nil {
		bad(path, "invalid regular expression %q: %v", p, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

func validHost(h string) bool {
	host := h
	if hp, _, err := net.SplitHostPort(h); err == nil {
		host = hp
	}
	return host != "" && !strings.ContainsAny(host, "/ ?#@")
}
