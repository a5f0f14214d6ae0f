package rules

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/faro-dev/faro/config"
)

func obj(t *testing.T, s string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(s), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestREADMECELExamples compiles config/examples/cel-rules.yaml (the
// README's examples) and checks each rule on objects it must and must not
// select.
func TestREADMECELExamples(t *testing.T) {
	set := loadSet(t, filepath.Join("..", "config", "examples", "cel-rules.yaml"))
	tests := []struct {
		rule     int
		typ      config.EventType
		old, obj string
		want     bool
	}{
		{0, config.Updated, `{"metadata":{"name":"d"},"spec":{"replicas":1}}`, `{"metadata":{"name":"d"},"spec":{"replicas":2}}`, true},
		{0, config.Updated, `{"metadata":{"name":"d"},"spec":{"replicas":1},"status":{"ready":0}}`, `{"metadata":{"name":"d"},"spec":{"replicas":1},"status":{"ready":1}}`, false},
		{0, config.Updated, `{"metadata":{"name":"d"},"spec":{"replicas":1}}`, `{"metadata":{"name":"d","labels":{"x":"y"}},"spec":{"replicas":1}}`, false},
		{1, config.Added, ``, `{"metadata":{"name":"c","labels":{"team":"search"}}}`, true},
		{1, config.Added, ``, `{"metadata":{"name":"c","labels":{"team":"infra"}}}`, false},
		{1, config.Added, ``, `{"metadata":{"name":"c"}}`, false},
		{2, config.Added, ``, `{"metadata":{"name":"d"},"spec":{"replicas":6}}`, true},
		{2, config.Added, ``, `{"metadata":{"name":"d"},"spec":{}}`, false},
		{3, config.Added, ``, `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"registry.example.com/a:1"},{"name":"b","image":"docker.io/b:1"}]}}`, true},
		{3, config.Added, ``, `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"registry.example.com/a:1"}]}}`, false},
		{4, config.Added, ``, `{"metadata":{"name":"s"},"type":"kubernetes.io/tls"}`, true},
		{4, config.Added, ``, `{"metadata":{"name":"s"},"type":"Opaque"}`, false},
	}
	for i, tt := range tests {
		ev := &Event{Type: tt.typ, Object: compact(t, obj(t, tt.obj))}
		if tt.old != "" {
			ev.OldObject = compact(t, obj(t, tt.old))
		}
		got, err := set.Rules[tt.rule].Matches(context.Background(), ev)
		if err != nil || got != tt.want {
			t.Errorf("case %d (rule %s): Matches = %v, %v; want %v", i, set.Rules[tt.rule].ID, got, err, tt.want)
		}
	}
}
