package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/sdktest"
)

func TestChangelog(t *testing.T) {
	oldCM := `{"kind":"ConfigMap","metadata":{"name":"app","resourceVersion":"1"},
		"data":{"level":"info","keep":"x","gone":"y","app.conf":"a=1"}}`
	newCM := `{"kind":"ConfigMap","metadata":{"name":"app","resourceVersion":"2"},
		"data":{"level":"debug","keep":"x","new":"z","app.conf":"a=2"}}`
	oldDeploy := `{"kind":"Deployment","spec":{"replicas":2,"template":{"spec":{"containers":[
		{"name":"app","image":"app:1"},{"name":"sidecar","image":"proxy:1"}]}}},"status":{"readyReplicas":2}}`
	newDeploy := `{"kind":"Deployment","spec":{"replicas":3,"template":{"spec":{"containers":[
		{"name":"app","image":"app:2"}]}}},"status":{"readyReplicas":1}}`
	long := strings.Repeat("é", 200) // 400 bytes, cut on a rune boundary

	tests := []struct {
		name     string
		config   any
		typ      string
		old, new string
		want     string // the record, "" for none
	}{
		{
			name: "configmap data", typ: sdk.Updated, old: oldCM, new: newCM,
			want: `{"key":"prod/app","kind":"ConfigMap","resource_version":"2","changes":[
				{"path":"data[\"app.conf\"]","old":"a=1","new":"a=2"},
				{"path":"data.gone","old":"y"},
				{"path":"data.level","old":"info","new":"debug"},
				{"path":"data.new","new":"z"}]}`,
		},
		{
			name: "deployment spec, status ignored", typ: sdk.Updated, old: oldDeploy, new: newDeploy,
			want: `{"key":"prod/app","kind":"Deployment","resource_version":"2","changes":[
				{"path":"spec.replicas","old":2,"new":3},
				{"path":"spec.template.spec.containers[0].image","old":"app:1","new":"app:2"},
				{"path":"spec.template.spec.containers[1]","old":{"name":"sidecar","image":"proxy:1"}}]}`,
		},
		{
			name: "full decode gives the same diff", config: map[string]any{"full_decode": true},
			typ: sdk.Updated, old: oldDeploy, new: newDeploy,
			want: `{"key":"prod/app","kind":"Deployment","resource_version":"2","changes":[
				{"path":"spec.replicas","old":2,"new":3},
				{"path":"spec.template.spec.containers[0].image","old":"app:1","new":"app:2"},
				{"path":"spec.template.spec.containers[1]","old":{"name":"sidecar","image":"proxy:1"}}]}`,
		},
		{
			name: "configured fields only", config: map[string]any{"fields": []string{"status"}},
			typ: sdk.Updated, old: oldDeploy, new: newDeploy,
			want: `{"key":"prod/app","kind":"Deployment","resource_version":"2","changes":[
				{"path":"status.readyReplicas","old":2,"new":1}]}`,
		},
		{
			name: "max changes", config: map[string]any{"max_changes": 1},
			typ: sdk.Updated, old: oldCM, new: newCM,
			want: `{"key":"prod/app","kind":"ConfigMap","resource_version":"2","changes":[
				{"path":"data[\"app.conf\"]","old":"a=1","new":"a=2"}],"omitted":3}`,
		},
		{
			name: "long values cut", typ: sdk.Updated,
			old: `{"kind":"ConfigMap","data":{"big":"` + long + `"}}`, new: `{"kind":"ConfigMap","data":{}}`,
			want: `{"key":"prod/app","kind":"ConfigMap","resource_version":"2","changes":[
				{"path":"data.big","old":"` + long[:256] + `...(+144 bytes)"}]}`,
		},
		{name: "no change in the fields", typ: sdk.Updated, old: oldCM, new: oldCM},
		{name: "added is not a change", typ: sdk.Added, new: newCM},
		{name: "deleted is not a change", typ: sdk.Deleted, new: newCM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := sdktest.Event{
				Header: abi.Header{Type: tt.typ, GVR: "v1/configmaps", Namespace: "prod", Name: "app", ResourceVersion: "2"},
				Object: sdktest.Object(tt.new),
			}
			if tt.old != "" {
				ev.OldObject = sdktest.Object(tt.old)
			}
			res := sdktest.Harness{Config: tt.config}.Run(ev)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if tt.want == "" {
				if len(res.Records) != 0 {
					t.Fatalf("got records %s, want none", res.Records)
				}
				return
			}
			if len(res.Records) != 1 {
				t.Fatalf("got %d records, want 1", len(res.Records))
			}
			assertJSON(t, res.Records[0], tt.want)
		})
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		config map[string]any
		want   string
	}{
		{map[string]any{"fieldz": []string{"spec"}}, `config: unknown key "fieldz"`},
		{map[string]any{"fields": "spec"}, `config: key "fields": want []string, got JSON string`},
		{map[string]any{"max_changes": "3"}, `config: key "max_changes": want int, got JSON string`},
	}
	for _, tt := range tests {
		res := sdktest.Harness{Config: tt.config}.Run(sdktest.Event{
			Header:    abi.Header{Type: sdk.Updated},
			Object:    sdktest.Object(`{}`),
			OldObject: sdktest.Object(`{}`),
		})
		if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) {
			t.Errorf("config %v: err = %v, want %q", tt.config, res.Err, tt.want)
		}
	}
}

func assertJSON(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("record\n got %s\nwant %s", gb, wb)
	}
}

// TestRecordJSON: the hand-written encoding is valid JSON that decodes to
// what encoding/json would have written, whatever the strings hold.
func TestRecordJSON(t *testing.T) {
	tests := []struct {
		name string
		rec  record
		want string // the decoded key, when it is not rec.Key
	}{
		{name: "plain", rec: record{Key: "prod/app", Kind: "ConfigMap", ResourceVersion: "7",
			Changes: []Change{{Path: "data.a", Old: json.RawMessage(`"x"`), New: json.RawMessage(`{"b":[1,2]}`)}, {Path: "data.c"}}}},
		{name: "escapes", rec: record{Key: "q\"b\\s\n\t\x01\x1f</script>&é日本", Kind: "K", Changes: []Change{{Path: `data["a\"b"]`, New: json.RawMessage(`null`)}}}},
		{name: "invalid UTF-8", rec: record{Key: "a\xffb\xc3", Kind: "K"}, want: "a\ufffdb\ufffd"},
		{name: "omitted", rec: record{Key: "k", Kind: "K", Changes: []Change{{Path: "p", Old: json.RawMessage(`1`)}}, Omitted: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rec.appendJSON(nil)
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			var decoded map[string]any
			if err := json.Unmarshal(got, &decoded); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == "" {
				want = tt.rec.Key
			}
			if decoded["key"] != want {
				t.Errorf("key = %q, want %q", decoded["key"], want)
			}
			// The same record through encoding/json, as it would be written
			// with struct tags.
			type change struct {
				Path string          `json:"path"`
				Old  json.RawMessage `json:"old,omitempty"`
				New  json.RawMessage `json:"new,omitempty"`
			}
			ref := struct {
				Key             string   `json:"key"`
				Kind            string   `json:"kind"`
				ResourceVersion string   `json:"resource_version"`
				Changes         []change `json:"changes"`
				Omitted         int      `json:"omitted,omitempty"`
			}{Key: want, Kind: tt.rec.Kind, ResourceVersion: tt.rec.ResourceVersion, Changes: []change{}, Omitted: tt.rec.Omitted}
			for _, c := range tt.rec.Changes {
				ref.Changes = append(ref.Changes, change(c))
			}
			refJSON, err := json.Marshal(ref)
			if err != nil {
				t.Fatal(err)
			}
			var wantDecoded map[string]any
			if err := json.Unmarshal(refJSON, &wantDecoded); err != nil {
				t.Fatal(err)
			}
			if g, w := mustMarshal(t, decoded), mustMarshal(t, wantDecoded); g != w {
				t.Errorf("record decodes to\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
