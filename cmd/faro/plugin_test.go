package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/faro-dev/faro/internal/wasmhost"
)

const fixtures = "testdata/plugin-run/"

func TestPluginRun(t *testing.T) {
	changeRecord := `{"key":"prod/app","kind":"ConfigMap","resource_version":"2","changes":[{"path":"data.level","old":"info","new":"debug"}]}`
	tests := []struct {
		name       string
		args       []string // after "plugin run"; "$changelog" and "$guest" are the built plugins
		stdin      string
		wantCode   int
		wantStdout string   // exactly
		wantStderr []string // in stderr
		notStderr  []string // not in stderr
	}{
		{
			name:       "update from JSON and YAML files",
			args:       []string{"$changelog", "--object", fixtures + "new.json", "--old-object", fixtures + "old.yaml"},
			wantStdout: changeRecord + "\n",
			wantStderr: []string{"event 1/1 UPDATED v1/configmaps prod/app: ok, 1 records in ", "1 events: 1 ok, 0 failed"},
		},
		{
			name:       "object on stdin, flags before the plugin",
			args:       []string{"--old-object", fixtures + "old.yaml", "--object", "-", "$changelog"},
			stdin:      mustRead(t, fixtures+"new.json"),
			wantStdout: changeRecord + "\n",
			wantStderr: []string{"1 events: 1 ok"},
		},
		{
			name:       "added by default: changelog emits nothing",
			args:       []string{"$changelog", "--object", fixtures + "new.json"},
			wantStderr: []string{"event 1/1 ADDED v1/configmaps prod/app: ok, 0 records"},
		},
		{
			name:       "a List is one event per item, with the given gvr",
			args:       []string{"$changelog", "--object", fixtures + "list.yaml", "--event-type", "updated", "--gvr", "v1/configmaps"},
			wantStdout: `{"key":"prod/a","kind":"ConfigMap","resource_version":"","changes":[{"path":"data","new":{"level":"info"}}]}` + "\n" + `{"key":"prod/b","kind":"ConfigMap","resource_version":"","changes":[{"path":"data","new":{"level":"debug"}}]}` + "\n",
			wantStderr: []string{"event 1/2 UPDATED v1/configmaps prod/a: ok", "event 2/2 UPDATED v1/configmaps prod/b: ok", "2 events: 2 ok, 0 failed"},
		},
		{
			name:       "plugin config from a YAML file",
			args:       []string{"$changelog", "--plugin-config", "@" + fixtures + "config.yaml", "--object", fixtures + "new.json", "--old-object", fixtures + "old.yaml"},
			wantStdout: `{"key":"prod/app","kind":"ConfigMap","resource_version":"2","changes":[{"path":"metadata.resourceVersion","old":"1","new":"2"}]}` + "\n",
		},
		{
			name:       "a config the plugin refuses",
			args:       []string{"$changelog", "--plugin-config", `{"fieldz":["data"]}`, "--object", fixtures + "new.json"},
			wantCode:   1,
			wantStderr: []string{`config: unknown key "fieldz"`},
		},
		{
			name:       "a failing event: kind and logs on stderr",
			args:       []string{"$guest", "--object", fixtures + "panic.yaml"},
			wantCode:   1,
			wantStderr: []string{"event 1/1 ADDED v1/configmaps prod/panic: panic: assignment to entry in nil map in ", "0 ok, 1 failed"},
			notStderr:  []string{"prod/panic: panic: panic:"},
		},
		{
			name:       "the plugin's logs and output go to stderr, not among the records",
			args:       []string{"$guest", "--object", "-"},
			stdin:      `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"log","namespace":"prod"}}`,
			wantStdout: "",
			wantStderr: []string{"hello from the guest", "a line on stdout", "a line on stderr", "event 1/1 ADDED v1/configmaps prod/log: ok, 0 records"},
		},
		{
			name:       "managedFields and last-applied are dropped, as the daemon does",
			args:       []string{"$changelog", "--plugin-config", "@" + fixtures + "config.yaml", "--object", fixtures + "applied-new.yaml", "--old-object", fixtures + "applied-old.yaml"},
			wantStderr: []string{"event 1/1 UPDATED v1/configmaps prod/app: ok, 0 records"},
		},
		{
			name:       "last-applied kept with --keep-last-applied; managedFields still dropped",
			args:       []string{"$changelog", "--plugin-config", "@" + fixtures + "config.yaml", "--keep-last-applied", "--object", fixtures + "applied-new.yaml", "--old-object", fixtures + "applied-old.yaml"},
			wantStdout: `{"key":"prod/app","kind":"ConfigMap","resource_version":"7","changes":[{"path":"metadata.annotations[\"kubectl.kubernetes.io/last-applied-configuration\"]","old":"{\"data\":{\"level\":\"info\"}}","new":"{\"data\":{\"level\":\"debug\"}}"}]}` + "\n",
		},
		{
			name:       "an error the daemon would retry",
			args:       []string{"$guest", "--object", "-"},
			stdin:      `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"error"}}`,
			wantCode:   1,
			wantStderr: []string{"error: boom (the daemon would retry it)"},
		},
		{name: "no object", args: []string{"$changelog"}, wantCode: 2, wantStderr: []string{"--object is required"}},
		{name: "no plugin", args: []string{"--object", fixtures + "new.json"}, wantCode: 2, wantStderr: []string{"want exactly one PLUGIN.wasm, got 0"}},
		{name: "bad event type", args: []string{"$changelog", "--object", fixtures + "new.json", "--event-type", "MODIFIED"}, wantCode: 2,
			wantStderr: []string{`--event-type "MODIFIED": want ADDED, UPDATED or DELETED`}},
		{name: "old object with a List", args: []string{"$changelog", "--object", fixtures + "list.yaml", "--old-object", fixtures + "old.yaml"}, wantCode: 2,
			wantStderr: []string{"--old-object needs one object, and one --object"}},
		{name: "not an object", args: []string{"$changelog", "--object", "-"}, stdin: "[1]", wantCode: 2, wantStderr: []string{"--object: -: "}},
		{name: "missing plugin file", args: []string{"nope.wasm", "--object", fixtures + "new.json"}, wantCode: 1, wantStderr: []string{"cannot read plugin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"plugin", "run"}
			for _, a := range tt.args {
				args = append(args, strings.NewReplacer("$changelog", changelogWasm, "$guest", guestWasm).Replace(a))
			}
			var stdout, stderr bytes.Buffer
			code := run(args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if stdout.String() != tt.wantStdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			for _, w := range tt.notStderr {
				if strings.Contains(stderr.String(), w) {
					t.Errorf("stderr has %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestPluginCompile(t *testing.T) {
	dir := t.TempDir()
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	if err := os.WriteFile(notWasm, []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"plugin", "compile", "--cache-dir", dir, changelogWasm}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if want := changelogWasm + ": compiled into " + dir + "\n"; stdout.String() != want {
		t.Errorf("stdout %q, want %q", stdout.String(), want)
	}
	// A host on that cache loads the plugin without compiling it: the
	// cache holds one entry, and loading adds none.
	entries := func() int {
		n := 0
		filepath.WalkDir(dir, func(_ string, d os.DirEntry, _ error) error {
			if !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	before := entries()
	h, err := wasmhost.New(wasmhost.Options{CacheDir: dir, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(context.Background())
	p, err := h.Load(context.Background(), wasmhost.PluginSpec{Name: "changelog", Path: changelogWasm})
	if err != nil {
		t.Fatal(err)
	}
	p.Close(context.Background())
	if after := entries(); after != before {
		t.Errorf("cache files %d before loading, %d after: the load compiled again", before, after)
	}

	stderr.Reset()
	if code := run([]string{"plugin", "compile", "--cache-dir", dir, notWasm}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "invalid module") {
		t.Errorf("compiling a non-module: exit %d, stderr %s", code, stderr.String())
	}
	if code := run([]string{"plugin", "compile"}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEventGVR(t *testing.T) {
	for _, tt := range []struct{ apiVersion, kind, flag, want string }{
		{"v1", "ConfigMap", "", "/v1, Resource=configmaps"},
		{"v1", "Endpoints", "", "/v1, Resource=endpoints"},
		{"networking.k8s.io/v1", "Ingress", "", "networking.k8s.io/v1, Resource=ingresses"},
		{"networking.k8s.io/v1", "NetworkPolicy", "", "networking.k8s.io/v1, Resource=networkpolicies"},
		{"example.com/v1", "Octopus", "example.com/v1/octopi", "example.com/v1, Resource=octopi"},
	} {
		obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": tt.apiVersion, "kind": tt.kind}}
		got, err := eventGVR(tt.flag, obj)
		if err != nil || got.String() != tt.want {
			t.Errorf("eventGVR(%q, %s %s) = %s, %v; want %s", tt.flag, tt.apiVersion, tt.kind, got, err, tt.want)
		}
	}
}
