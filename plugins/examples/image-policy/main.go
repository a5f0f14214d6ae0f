// Command image-policy is a Faro plugin that checks the containers of Pods
// and Deployments and emits one finding per violation: an image not from an
// allowed registry, an image not pinned by digest, or a container without
// resource limits.
//
// Config:
//
//	allowed_registries: [registry.example.com, ghcr.io/example]  # prefixes; empty: any registry
//	require_digest: true                                         # default true
//	required_limits: [cpu, memory]                               # default cpu and memory; [] disables
//
// Images are normalised as container runtimes do ("nginx" is
// docker.io/library/nginx). Updates that leave the containers unchanged
// (status updates) are skipped, and so are deletions.
//
// Record:
//
//	{"key":"prod/web","kind":"Deployment","container":"app","image":"nginx:1.27",
//	 "check":"registry","message":"registry docker.io is not allowed"}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o image-policy.wasm .
package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {}

// cfg is the plugin's configuration, with its defaults; the host refuses a
// config with other keys or types when it loads the plugin.
var cfg = config{RequiredLimits: []string{"cpu", "memory"}}

func init() {
	sdk.Config(&cfg)
	sdk.Handle(handle)
}

type config struct {
	AllowedRegistries []string `json:"allowed_registries"`
	RequireDigest     *bool    `json:"require_digest"`
	RequiredLimits    []string `json:"required_limits"`
}

type container struct {
	Name      string `json:"name"`
	Image     string `json:"image"`
	Resources struct {
		Limits map[string]any `json:"limits"`
	} `json:"resources"`
}

// Finding is one violation.
type Finding struct {
	Key       string `json:"key"`
	Kind      string `json:"kind"`
	Container string `json:"container"`
	Image     string `json:"image"`
	Check     string `json:"check"` // registry, digest or limits
	Message   string `json:"message"`
}

// podSpec is where each kind keeps its pod spec.
var podSpec = map[string][]string{
	"Pod":        {"spec"},
	"Deployment": {"spec", "template", "spec"},
}

func handle(ev sdk.Event) error {
	kind := ev.Kind()
	path, ok := podSpec[kind]
	if !ok || ev.Type == sdk.Deleted {
		return nil
	}
	if ev.Type == sdk.Updated && sameContainers(ev, path) {
		return nil
	}
	for _, list := range []string{"initContainers", "containers"} {
		var cs []container
		if v := ev.Field(at(path, list)...); v.Exists() {
			if err := v.Decode(&cs); err != nil {
				return fmt.Errorf("%s: %w", list, err)
			}
		}
		for _, c := range cs {
			for _, f := range check(c, cfg) {
				f.Key, f.Kind = ev.Key(), kind
				if err := sdk.Emit(f); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// sameContainers reports whether an update left both container lists as
// they were.
func sameContainers(ev sdk.Event, path []string) bool {
	for _, list := range []string{"initContainers", "containers"} {
		p := at(path, list)
		if !bytes.Equal(ev.Field(p...).Raw(), ev.OldField(p...).Raw()) {
			return false
		}
	}
	return true
}

// at is path/list, without writing into path's array.
func at(path []string, list string) []string {
	return append(path[:len(path):len(path)], list)
}

func check(c container, cfg config) []Finding {
	var fs []Finding
	add := func(check, format string, args ...any) {
		fs = append(fs, Finding{Container: c.Name, Image: c.Image, Check: check, Message: fmt.Sprintf(format, args...)})
	}
	name, digest := parseImage(c.Image)
	if len(cfg.AllowedRegistries) > 0 && !allowed(name, cfg.AllowedRegistries) {
		add("registry", "image %s is not from an allowed registry (%s)", name, strings.Join(cfg.AllowedRegistries, ", "))
	}
	if (cfg.RequireDigest == nil || *cfg.RequireDigest) && digest == "" {
		add("digest", "image is not pinned by digest")
	}
	var missing []string
	for _, r := range cfg.RequiredLimits {
		if _, ok := c.Resources.Limits[r]; !ok {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		add("limits", "no %s limit", strings.Join(missing, " or "))
	}
	return fs
}

// parseImage returns the image's fully qualified repository (registry host
// first, tag and digest removed) and its digest, if any.
func parseImage(image string) (name, digest string) {
	name, digest, _ = strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i] // a tag, not a registry port
	}
	registry, repo, hasSlash := strings.Cut(name, "/")
	if !hasSlash || !strings.ContainsAny(registry, ".:") && registry != "localhost" {
		registry, repo = "docker.io", name
	}
	if registry == "index.docker.io" {
		registry = "docker.io"
	}
	if registry == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return registry + "/" + repo, digest
}

// allowed reports whether name is under one of the registry prefixes,
// matched at a path boundary.
func allowed(name string, prefixes []string) bool {
	for _, p := range prefixes {
		p = strings.TrimSuffix(p, "/")
		if name == p || strings.HasPrefix(name, p+"/") {
			return true
		}
	}
	return false
}
