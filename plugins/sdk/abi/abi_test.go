package abi

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestPointerLookup(t *testing.T) {
	var doc any
	json.Unmarshal([]byte(`{"a":{"b/c":{"d~e":[10,{"f":null}]}},"":"empty key"}`), &doc)
	tests := []struct {
		segments []string
		pointer  string
		want     string // JSON, "" for not found
	}{
		{nil, "", `{"":"empty key","a":{"b/c":{"d~e":[10,{"f":null}]}}}`},
		{[]string{"a", "b/c", "d~e", "0"}, "/a/b~1c/d~0e/0", `10`},
		{[]string{"a", "b/c", "d~e", "1", "f"}, "/a/b~1c/d~0e/1/f", `null`},
		{[]string{""}, "/", `"empty key"`},
		{[]string{"a", "b/c", "d~e", "2"}, "/a/b~1c/d~0e/2", ""},
		{[]string{"a", "b/c", "d~e", "-1"}, "/a/b~1c/d~0e/-1", ""},
		{[]string{"a", "b/c", "d~e", "+1"}, "/a/b~1c/d~0e/+1", ""},
		{[]string{"a", "x"}, "/a/x", ""},
		{[]string{"a", "b/c", "d~e", "0", "x"}, "/a/b~1c/d~0e/0/x", ""},
	}
	for _, tt := range tests {
		p := string(AppendPointer(nil, tt.segments...))
		if p != tt.pointer {
			t.Errorf("AppendPointer(%q) = %q, want %q", tt.segments, p, tt.pointer)
		}
		v, ok := Lookup(doc, p)
		got := ""
		if ok {
			b, _ := json.Marshal(v)
			got = string(b)
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %s, want %s", p, got, tt.want)
		}
	}
	if _, ok := Lookup(doc, "a"); ok {
		t.Error("Lookup accepted a pointer without a leading slash")
	}
}

func TestSplitPointer(t *testing.T) {
	tests := []struct{ in, first, rest string }{
		{"/object", "object", ""},
		{"/object/", "object", "/"},
		{"/object/spec/x", "object", "/spec/x"},
		{"/a~1b/c", "a/b", "/c"},
		{"/object/a~1b", "object", "/a~1b"}, // the rest stays escaped
		{"/", "", ""},
	}
	for _, tt := range tests {
		first, rest, ok := splitPointer(tt.in)
		if !ok || first != tt.first || rest != tt.rest {
			t.Errorf("splitPointer(%q) = %q, %q, %v", tt.in, first, rest, ok)
		}
	}
	for _, bad := range []string{"", "object"} {
		if _, _, ok := splitPointer(bad); ok {
			t.Errorf("splitPointer(%q) ok", bad)
		}
	}
}

func TestValidRecord(t *testing.T) {
	for in, want := range map[string]bool{`{}`: true, ` {"a":1}`: true, `[]`: false, `"x"`: false, `{`: false, ``: false, `{} {}`: false} {
		if got := ValidRecord([]byte(in)); got != want {
			t.Errorf("ValidRecord(%q) = %v", in, got)
		}
	}
}

func TestHeader(t *testing.T) {
	for _, h := range []Header{
		{},
		{Type: "UPDATED", GVR: "apps/v1/deployments", Namespace: "prod", Name: "web", UID: "u-1", ResourceVersion: "42", Rule: "r", Initial: true},
		{Name: "ünï\x00\"quoted\"", Rule: "bad\xffutf8"},
	} {
		b := AppendHeader([]byte("prefix"), &h)
		got, err := ParseHeader(b[len("prefix"):])
		if err != nil || got != h {
			t.Errorf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	valid := AppendHeader(nil, &Header{Name: "web"})
	for name, b := range map[string][]byte{
		"empty":       nil,
		"short":       valid[:10],
		"truncated":   valid[:len(valid)-1],
		"trailing":    append(append([]byte(nil), valid...), 'x'),
		"bad initial": append(append(append([]byte(nil), valid[:28]...), 2), valid[29:]...),
	} {
		if _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: ParseHeader accepted %q", name, b)
		}
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(AppendHeader(nil, &Header{Type: "ADDED", Name: "x", Initial: true}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err == nil && string(AppendHeader(nil, &h)) != string(b) {
			t.Fatalf("ParseHeader(%q) = %+v does not round-trip", b, h)
		}
	})
}

func TestChangesAt(t *testing.T) {
	var old, cur any
	json.Unmarshal([]byte(`{"data":{"a":"1","b":"x","app.conf":"k=v","n":1},"spec":{"l":[1,2],"m":{}}}`), &old)
	json.Unmarshal([]byte(`{"data":{"a":"2","c":"y","app.conf":"k=v","n":1.0},"spec":{"l":[1,3,4],"m":[]}}`), &cur)
	tests := []struct {
		pointer string
		want    string // path=old>new, ";"-separated; "-" for absent
	}{
		{"/data", `/a="1">"2";/b="x">-;/c=->"y"`},
		{"/spec", `/l/1=2>3;/l/2=->4;/m={}>[]`},
		{"/data/a", `="1">"2"`},
		{"/data/app.conf", ``},
		{"/none", ``},
		{"/spec/l/2", `=->4`},
	}
	for _, tt := range tests {
		cs, err := ParseChanges(AppendChanges(nil, ChangesAt(old, cur, tt.pointer)))
		if err != nil {
			t.Fatalf("%s: %v", tt.pointer, err)
		}
		var got []string
		for _, c := range cs {
			var path string
			for _, e := range c.Path {
				if e.Index >= 0 {
					path += "/" + strconv.Itoa(e.Index)
				} else {
					path += "/" + e.Key
				}
			}
			side := func(b []byte) string {
				if b == nil {
					return "-"
				}
				return string(b)
			}
			got = append(got, path+"="+side(c.Old)+">"+side(c.New))
		}
		if s := strings.Join(got, ";"); s != tt.want {
			t.Errorf("ChangesAt(%s) = %s, want %s", tt.pointer, s, tt.want)
		}
	}
}

func TestScalarEqual(t *testing.T) {
	tests := []struct {
		a, b any
		want bool
	}{
		{int64(1), float64(1), true},
		{json.Number("1.0"), int64(1), true},
		{int64(1<<53 + 1), int64(1 << 53), false}, // equal as float64s
		{int64(7), int64(7), true},
		{"1", int64(1), false},
		{nil, nil, true},
		{nil, "", false},
		{true, true, true},
		{map[string]any{}, map[string]any{}, false},
		{[]any{}, "x", false},
	}
	for _, tt := range tests {
		if got := ScalarEqual(tt.a, tt.b); got != tt.want {
			t.Errorf("ScalarEqual(%#v, %#v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzParseChanges(f *testing.F) {
	f.Add(AppendChanges(nil, []Change{{Path: []PathElem{{Key: "a", Index: -1}, {Index: 3}}, Old: []byte(`1`)}}))
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ParseChanges(b)
		if err == nil && string(AppendChanges(nil, cs)) != string(b) {
			t.Fatalf("ParseChanges(%q) = %+v does not round-trip", b, cs)
		}
	})
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exact", 5, "exact"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},       // é is 2 bytes: not cut in half
		{"a€b", 3, "a"},      // € is 3 bytes
		{"a€b", 4, "a€"},     // a whole rune fits
		{"€", 0, ""},         // nothing fits
		{"\x80\x80x", 1, ""}, // invalid input: continuation bytes are not kept cut
	} {
		if got := string(Truncate([]byte(tt.in), tt.n)); got != tt.want {
			t.Errorf("Truncate([]byte(%q), %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
		if got := Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
