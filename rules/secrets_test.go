package rules

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faro-dev/faro/config"
	"github.com/faro-dev/faro/internal/object"
)

// secretJSON is a Secret as kubectl apply leaves it: its values in data,
// stringData and the last-applied annotation.
const secretJSON = `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"prod",
 "annotations":{"team":"payments","kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
 "type":"Opaque","data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"stringData":{"token":"s3cr3t-t0k3n"}}`

// secretValues are every value of secretJSON that must not leak.
var secretValues = []string{"aHVudGVyMg==", "YWRtaW4=", "s3cr3t-t0k3n"}

func TestRedact(t *testing.T) {
	sec := obj(t, secretJSON)
	before := sec.DeepCopy()
	red := Redact(sec)
	if !reflect.DeepEqual(sec.Object, before.Object) {
		t.Fatal("Redact modified its input")
	}
	want := obj(t, secretJSON)
	want.Object["data"] = map[string]any{"password": Redacted, "user": Redacted}
	want.Object["stringData"] = map[string]any{"token": Redacted}
	want.SetAnnotations(map[string]string{"team": "payments", object.LastApplied: Redacted})
	if !reflect.DeepEqual(red.Object, want.Object) {
		t.Errorf("Redact:\n got %v\nwant %v", red.Object, want.Object)
	}

	for _, other := range []string{
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}`,
		`{"apiVersion":"example.com/v1","kind":"Secret","metadata":{"name":"s"},"data":{"k":"v"}}`,
	} {
		o := obj(t, other)
		if Redact(o) != o {
			t.Errorf("Redact changed a %s %s", o.GetAPIVersion(), o.GetKind())
		}
	}
	bare := obj(t, `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"empty"}}`)
	if got := Redact(bare); !reflect.DeepEqual(got.Object, bare.Object) {
		t.Errorf("a Secret without data: %v", got.Object)
	}
}

// TestSecretsInCEL compiles real CEL rules on a Secret: an entry that does
// not reveal secrets sees the marker, in its matches and in its errors; an
// entry with `secrets: reveal` sees the values.
func TestSecretsInCEL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "faro.yaml")
	if err := os.WriteFile(path, []byte(`resources:
  - gvr: v1/secrets
    cel: "object.data[object.data.password] != ''"
  - gvr: v1/secrets
    cel: "object.data.password == '<redacted>' && object.stringData.token == '<redacted>' && changedPaths.size() == 0"
  - gvr: v1/secrets
    secrets: reveal
    cel: "object.data.password == 'aHVudGVyMg==' && 'data.password' in changedPaths"
  - gvr: v1/secrets
    secrets: reveal
    cel: "object.data[object.data.password] != ''"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	set := loadSet(t, path)
	old := obj(t, secretJSON)
	old.Object["data"] = map[string]any{"password": "b2xk", "user": "YWRtaW4="}
	ev := &Event{Type: config.Updated, Object: compact(t, obj(t, secretJSON)), OldObject: compact(t, old)}

	_, err := set.Rules[0].Matches(context.Background(), ev)
	if err == nil {
		t.Fatal("looking up a redacted value as a key did not fail")
	}
	if !strings.Contains(err.Error(), "no such key: <redacted>") {
		t.Errorf("err = %v, want the lookup of the marker to fail", err)
	}
	for _, v := range append(secretValues, "b2xk") {
		if strings.Contains(err.Error(), v) {
			t.Errorf("the CEL error of an entry that does not reveal secrets shows %q: %v", v, err)
		}
	}
	if ok, err := set.Rules[1].Matches(context.Background(), ev); !ok || err != nil {
		t.Errorf("the redacted view: match %v, err %v; want the marker in every value and no changed path", ok, err)
	}
	if ok, err := set.Rules[2].Matches(context.Background(), ev); !ok || err != nil {
		t.Errorf("secrets: reveal: match %v, err %v; want the values and their changes", ok, err)
	}
	// Without redaction the same expression's error does carry the value:
	// what the first entry was kept from.
	if _, err := set.Rules[3].Matches(context.Background(), ev); err == nil || !strings.Contains(err.Error(), "aHVudGVyMg==") {
		t.Errorf("secrets: reveal: err = %v, want the value in it", err)
	}

	// What handlers get: the same views, the redacted one made once.
	obj1, old1, err := ev.Objects(set.Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	obj2, _, _ := ev.Objects(set.Rules[1])
	if obj1 != obj2 {
		t.Error("two redacting entries got two copies")
	}
	if obj1.Object["data"].(map[string]any)["password"] != Redacted || old1.Object["data"].(map[string]any)["password"] != Redacted {
		t.Errorf("handlers of a redacting entry see %v / %v", obj1.Object["data"], old1.Object["data"])
	}
	o, oo, _ := ev.Objects(set.Rules[2])
	if o.Object["data"].(map[string]any)["password"] != "aHVudGVyMg==" || oo.Object["data"].(map[string]any)["password"] != "b2xk" {
		t.Errorf("an entry with secrets: reveal does not get the object as delivered: %v / %v", o.Object["data"], oo.Object["data"])
	}
	if again, _, _ := ev.Objects(set.Rules[2]); again != o {
		t.Error("the event's object was decoded twice")
	}
}
