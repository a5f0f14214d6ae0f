package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk/wasmtest"
)

// The changelog example and wasmhost's test guest (whose event name picks
// its behaviour), built once per test binary.
var changelogWasm, guestWasm string

func TestMain(m *testing.M) {
	wasmtest.MainBuilding(m, map[string]*string{
		"../../plugins/examples/changelog":       &changelogWasm,
		"../../internal/wasmhost/testdata/guest": &guestWasm,
	})
}

func TestValidatePlugins(t *testing.T) {
	tests := []struct {
		name     string
		config   string // the changelog plugin's config, YAML flow style
		wantCode int
		want     []string // in stdout+stderr
	}{
		{name: "good config", config: `{fields: [data], max_changes: 3}`, wantCode: 0, want: []string{": ok"}},
		{name: "no config", config: `null`, wantCode: 0, want: []string{": ok"}},
		{name: "typo in a key", config: `{fieldz: [data]}`, wantCode: 1,
			want: []string{"plugins[0].config", `plugin "changelog"`, `config: unknown key "fieldz"`}},
		{name: "wrong type", config: `{fields: data}`, wantCode: 1,
			want: []string{"plugins[0].config", `config: key "fields": want []string, got JSON string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, fmt.Sprintf(`plugins:
  - name: changelog
    path: %s
    config: %s
resources:
  - gvr: v1/configmaps
    plugins: [changelog]
`, changelogWasm, tt.config))
			var stdout, stderr bytes.Buffer
			code := run([]string{"validate", "--config", path}, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tt.wantCode, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "faro.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
