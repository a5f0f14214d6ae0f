package object

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDecodeList(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "list.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := DecodeList(f, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.ResourceVersion != "120" || l.Continue != "" || len(l.Items) != 2 {
		t.Fatalf("list rv %q continue %q with %d items", l.ResourceVersion, l.Continue, len(l.Items))
	}
	for _, o := range l.Items {
		// Items of a built-in type's list carry no type: they get the list's.
		if o.Kind != "ConfigMap" || o.APIVersion != "v1" {
			t.Errorf("%s: type %s %s", o.Name, o.APIVersion, o.Kind)
		}
		u, err := o.Unstructured()
		if err != nil {
			t.Fatal(err)
		}
		if u.GetKind() != "ConfigMap" || u.GetAPIVersion() != "v1" || u.GetManagedFields() != nil {
			t.Errorf("%s: decoded %v", o.Name, u.Object)
		}
	}
	u, err := l.Items[1].Unstructured()
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(u.Object, "data", "n"); v != "2" {
		t.Errorf("item data = %q", v)
	}
}

func TestDecodeListRefuses(t *testing.T) {
	cases := map[string]string{
		"not an object": `[]`,
		"bad item":      `{"kind":"ConfigMapList","items":[{"metadata":[]}]}`,
		"items object":  `{"items":{}}`,
		"truncated":     `{"kind":"ConfigMapList","items":[{"metadata":{}}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeList(strings.NewReader(body), Options{}); err == nil {
				t.Errorf("DecodeList(%s) succeeded", body)
			}
		})
	}
}

func TestWatchDecoder(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "watch.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	d := NewWatchDecoder(f, Options{})
	defer d.Close()
	var got []string
	for {
		typ, obj, err := d.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *Object:
			got = append(got, string(typ)+" "+o.Name+"@"+o.ResourceVersion+" "+o.GetAnnotations()[metav1.InitialEventsAnnotationKey])
		case *metav1.Status:
			got = append(got, string(typ)+" "+string(o.Reason))
		}
	}
	want := []string{"ADDED a@5 ", "MODIFIED a@6 ", "BOOKMARK @7 true", "DELETED a@8 ", "ERROR Expired"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("decoded %q, want %q", got, want)
	}
}

func TestWatchDecoderRefuses(t *testing.T) {
	for _, body := range []string{`{"type":"SOMETHING","object":{}}`, `{"type":"ADDED","object":[]}`, `{"type":"ADDED"`} {
		d := NewWatchDecoder(io.NopCloser(strings.NewReader(body)), Options{})
		if typ, _, err := d.Decode(); err == nil || typ != "" {
			t.Errorf("Decode(%s) = %q, %v", body, typ, err)
		}
	}
}
