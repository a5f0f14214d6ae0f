package main

import (
	"encoding/json"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
)

const digest = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func pod(containers string) map[string]any {
	return sdktest.Object(`{"kind":"Pod","metadata":{"name":"web"},"spec":{"containers":` + containers + `}}`)
}

func deployment(containers, initContainers string) map[string]any {
	return sdktest.Object(`{"kind":"Deployment","metadata":{"name":"web"},"spec":{"template":{"spec":{
		"initContainers":` + initContainers + `,"containers":` + containers + `}}}}`)
}

const limited = `"resources":{"limits":{"cpu":"1","memory":"1Gi"}}`

func TestImagePolicy(t *testing.T) {
	registries := map[string]any{"allowed_registries": []string{"registry.example.com", "ghcr.io/example/"}}
	tests := []struct {
		name   string
		config map[string]any
		typ    string
		obj    map[string]any
		old    map[string]any
		want   []string // check/container/message
	}{
		{
			name:   "compliant pod",
			obj:    pod(`[{"name":"app","image":"registry.example.com/team/app:1.0` + digest + `",` + limited + `}]`),
			config: registries,
		},
		{
			name:   "every violation",
			config: registries,
			obj:    pod(`[{"name":"app","image":"nginx:1.27"}]`),
			want: []string{
				"registry/app/image docker.io/library/nginx is not from an allowed registry (registry.example.com, ghcr.io/example/)",
				"digest/app/image is not pinned by digest",
				"limits/app/no cpu or memory limit",
			},
		},
		{
			name:   "registry prefix matches at a path boundary",
			config: registries,
			obj: pod(`[{"name":"ok","image":"ghcr.io/example/tool` + digest + `",` + limited + `},
				{"name":"bad","image":"ghcr.io/example-evil/tool` + digest + `",` + limited + `}]`),
			want: []string{"registry/bad/image ghcr.io/example-evil/tool is not from an allowed registry (registry.example.com, ghcr.io/example/)"},
		},
		{
			name: "deployment containers and init containers, default config",
			obj: deployment(`[{"name":"app","image":"localhost:5000/app:2",`+limited+`}]`,
				`[{"name":"init","image":"busybox`+digest+`","resources":{"limits":{"memory":"64Mi"}}}]`),
			want: []string{"limits/init/no cpu limit", "digest/app/image is not pinned by digest"},
		},
		{
			name:   "checks can be turned off",
			config: map[string]any{"require_digest": false, "required_limits": []string{}},
			obj:    pod(`[{"name":"app","image":"nginx"}]`),
		},
		{
			name: "update with unchanged containers is skipped",
			typ:  sdk.Updated,
			obj:  pod(`[{"name":"app","image":"nginx"}]`),
			old:  pod(`[{"name":"app","image":"nginx"}]`),
		},
		{
			name: "update with changed image is checked",
			typ:  sdk.Updated,
			obj:  pod(`[{"name":"app","image":"nginx` + digest + `",` + limited + `}]`),
			old:  pod(`[{"name":"app","image":"nginx"}]`),
		},
		{name: "deletion skipped", typ: sdk.Deleted, obj: pod(`[{"name":"app","image":"nginx"}]`)},
		{name: "other kinds skipped", obj: sdktest.Object(`{"kind":"ConfigMap","spec":{"containers":[{"name":"x","image":"y"}]}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := tt.typ
			if typ == "" {
				typ = sdk.Added
			}
			res := sdktest.Harness{Config: tt.config}.Run(sdktest.Event{
				Header:    abi.Header{Type: typ, Namespace: "prod", Name: "web"},
				Object:    tt.obj,
				OldObject: tt.old,
			})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			var got []string
			for _, r := range res.Records {
				var f Finding
				if err := json.Unmarshal(r, &f); err != nil {
					t.Fatal(err)
				}
				if f.Key != "prod/web" || f.Kind == "" || f.Image == "" {
					t.Errorf("finding %s lacks key, kind or image", r)
				}
				got = append(got, f.Check+"/"+f.Container+"/"+f.Message)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("findings\n got %q\nwant %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("finding %d\n got %q\nwant %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseImage(t *testing.T) {
	tests := []struct{ image, name, digest string }{
		{"nginx", "docker.io/library/nginx", ""},
		{"nginx:1.27", "docker.io/library/nginx", ""},
		{"docker.io/nginx", "docker.io/library/nginx", ""},
		{"index.docker.io/bitnami/redis:7", "docker.io/bitnami/redis", ""},
		{"bitnami/redis:7", "docker.io/bitnami/redis", ""},
		{"localhost:5000/app", "localhost:5000/app", ""},
		{"localhost/app:1", "localhost/app", ""},
		{"registry.example.com:443/team/app:1.0@sha256:abc", "registry.example.com:443/team/app", "sha256:abc"},
		{"ghcr.io/org/tool@sha256:abc", "ghcr.io/org/tool", "sha256:abc"},
	}
	for _, tt := range tests {
		name, digest := parseImage(tt.image)
		if name != tt.name || digest != tt.digest {
			t.Errorf("parseImage(%q) = %q, %q; want %q, %q", tt.image, name, digest, tt.name, tt.digest)
		}
	}
}
