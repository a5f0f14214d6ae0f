package object

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// reference strips what Decode strips, through maps.
func reference(t testing.TB, raw []byte, opts Options) map[string]any {
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("reference: %v", err)
	}
	if opts.MetadataOnly {
		for k := range doc {
			if k != "apiVersion" && k != "kind" && k != "metadata" {
				delete(doc, k)
			}
		}
		if md, ok := doc["metadata"].(map[string]any); ok {
			for k := range md {
				switch k {
				case "name", "namespace", "uid", "resourceVersion", "labels":
				default:
					delete(md, k)
				}
			}
		}
	}
	if md, ok := doc["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		if ann, ok := md["annotations"].(map[string]any); ok && !opts.KeepLastApplied {
			if _, had := ann[LastApplied]; had {
				delete(ann, LastApplied)
				if len(ann) == 0 {
					delete(md, "annotations")
				}
			}
		}
	}
	return doc
}

func TestDecode(t *testing.T) {
	cases := []struct {
		file string
		opts Options
		// want are the metadata fields Object holds.
		name, namespace, uid, rv string
		labels                   map[string]string
		rvInt                    bool
	}{
		{file: "configmap.json", name: "cm-1", namespace: "default", uid: "u-1", rv: "42", rvInt: true,
			labels: map[string]string{"app": "web", "tier": "front"}},
		{file: "configmap.json", opts: Options{KeepLastApplied: true}, name: "cm-1", namespace: "default", uid: "u-1", rv: "42", rvInt: true,
			labels: map[string]string{"app": "web", "tier": "front"}},
		{file: "configmap.json", opts: Options{MetadataOnly: true}, name: "cm-1", namespace: "default", uid: "u-1", rv: "42", rvInt: true,
			labels: map[string]string{"app": "web", "tier": "front"}},
		{file: "managed-last.json", opts: Options{MetadataOnly: true, KeepLastApplied: true}, name: "cm-2", namespace: "ns", uid: "u-2", rv: "7", rvInt: true},
		{file: "cluster-scoped.json", opts: Options{MetadataOnly: true}, name: "node-1", uid: "u-5", rv: "11", rvInt: true},
		{file: "whitespace.json", opts: Options{MetadataOnly: true}, name: "w", namespace: "ns", uid: "u-6", rv: "12", rvInt: true, labels: map[string]string{"k": "v"}},
		{file: "managed-last.json", name: "cm-2", namespace: "ns", uid: "u-2", rv: "7", rvInt: true},
		{file: "only-last-applied.json", name: "s", namespace: "ns", uid: "u-3", rv: "8", rvInt: true},
		{file: "only-last-applied.json", opts: Options{KeepLastApplied: true}, name: "s", namespace: "ns", uid: "u-3", rv: "8", rvInt: true},
		{file: "escapes.json", name: "caf\u00e9", namespace: "a\"b", uid: "u-4", rv: "x9"},
		{file: "cluster-scoped.json", name: "node-1", uid: "u-5", rv: "11", rvInt: true},
		{file: "whitespace.json", name: "w", namespace: "ns", uid: "u-6", rv: "12", rvInt: true, labels: map[string]string{"k": "v"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			in := append([]byte(nil), raw...)
			o, err := Decode(in, c.opts)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if o.Name != c.name || o.Namespace != c.namespace || string(o.UID) != c.uid || o.ResourceVersion != c.rv {
				t.Errorf("meta = %q %q %q %q, want %q %q %q %q", o.Name, o.Namespace, o.UID, o.ResourceVersion, c.name, c.namespace, c.uid, c.rv)
			}
			if !reflect.DeepEqual(o.GetLabels(), c.labels) {
				t.Errorf("labels = %v, want %v", o.GetLabels(), c.labels)
			}
			if _, ok := o.RV(); ok != c.rvInt {
				t.Errorf("RV integer = %v, want %v", ok, c.rvInt)
			}
			if o.Partial() != c.opts.MetadataOnly {
				t.Errorf("Partial() = %v, want %v", o.Partial(), c.opts.MetadataOnly)
			}
			if o.GetAnnotations() != nil {
				t.Errorf("annotations kept in meta: %v", o.GetAnnotations())
			}
			var got map[string]any
			if err := json.Unmarshal(o.JSON(), &got); err != nil {
				t.Fatalf("stripped JSON is invalid: %v\n%s", err, o.JSON())
			}
			if want := reference(t, raw, c.opts); !reflect.DeepEqual(got, want) {
				t.Errorf("stripped JSON\n%s\nwant the same as\n%v", o.JSON(), want)
			}
			u, err := o.Unstructured()
			if err != nil {
				t.Fatal(err)
			}
			if u.GetName() != c.name || u.GetUID() != o.UID {
				t.Errorf("Unstructured() = %s %s", u.GetName(), u.GetUID())
			}
		})
	}
}

func TestDecodeBookmark(t *testing.T) {
	raw := `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"99","creationTimestamp":null,"annotations":{"k8s.io/initial-events-end":"true"}}}`
	// A metadata-only watch drops annotations, but not this mark.
	for _, opts := range []Options{{}, {MetadataOnly: true}} {
		o, err := Decode([]byte(raw), opts)
		if err != nil {
			t.Fatal(err)
		}
		if o.GetResourceVersion() != "99" || o.GetAnnotations()[metav1.InitialEventsAnnotationKey] != "true" {
			t.Errorf("%+v: bookmark meta: rv %q annotations %v", opts, o.GetResourceVersion(), o.GetAnnotations())
		}
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	cases := map[string]string{
		"empty":          ``,
		"not an object":  `[1,2]`,
		"truncated":      `{"metadata":{"name":"a"`,
		"trailing data":  `{"kind":"x"} {}`,
		"missing colon":  `{"kind" "x"}`,
		"bad string":     `{"kind":"x`,
		"bad separator":  `{"kind":"x" "a":1}`,
		"metadata array": `{"metadata":[]}`,
		"name a number":  `{"metadata":{"name":5}}`,
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(raw), Options{}); err == nil || !strings.Contains(err.Error(), "decoding object") {
				t.Errorf("Decode(%q) = %v, want a decoding error", raw, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, false, false)
		f.Add(raw, true, false)
		f.Add(raw, false, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, keep, metadataOnly bool) {
		opts := Options{KeepLastApplied: keep, MetadataOnly: metadataOnly}
		o, err := Decode(append([]byte(nil), raw...), opts)
		var doc map[string]any
		valid := json.Unmarshal(raw, &doc) == nil
		if err != nil {
			return // refusing is allowed; what is accepted must be right
		}
		if !valid {
			// The scanner skips values without checking them (numbers,
			// literals): what it accepts must still be an object.
			return
		}
		var got map[string]any
		if err := json.Unmarshal(o.JSON(), &got); err != nil {
			t.Fatalf("stripped JSON is invalid: %v\n%q\nfrom %q", err, o.JSON(), raw)
		}
		if want := reference(t, raw, opts); !reflect.DeepEqual(got, want) {
			t.Fatalf("stripped JSON %q, want %v (from %q)", o.JSON(), want, raw)
		}
	})
}

func TestLabelSet(t *testing.T) {
	o, err := Decode([]byte(`{"metadata":{"name":"a","labels":{"app.kubernetes.io/name":"web","a\/b":"x","empty":""}}}`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := o.LabelSet()
	for _, c := range []struct {
		key, value string
		found      bool
	}{
		{"app.kubernetes.io/name", "web", true},
		{"a/b", "x", true},
		{"empty", "", true},
		{"missing", "", false},
	} {
		if v, ok := l.Lookup(c.key); v != c.value || ok != c.found || l.Has(c.key) != c.found || l.Get(c.key) != c.value {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", c.key, v, ok, c.value, c.found)
		}
	}
	none, _ := Decode([]byte(`{"metadata":{"name":"b","labels":null}}`), Options{})
	if none.LabelSet().Has("app") || none.GetLabels() != nil {
		t.Error("null labels read as some")
	}
}

// BenchmarkDecode compares the cache's decode of one ConfigMap (strip and
// identity, no maps) with the map decode a plain dynamic informer does.
func BenchmarkDecode(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "configmap.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("object", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(append([]byte(nil), raw...), Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unstructured", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(append([]byte(nil), raw...)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
