// Command changelog is a Faro plugin that, for UPDATED events, emits the
// changed paths of the object with their old and new values: a compact diff
// limited to the configured top-level fields.
//
// Config:
//
//	fields: [spec, data]  # top-level fields to compare (default spec, data)
//	max_changes: 50       # changes listed per event; the rest are counted
//	full_decode: false    # decode whole objects instead of asking the host
//	                      # for the fields; only useful to compare the costs
//
// Record:
//
//	{"key":"prod/app","kind":"ConfigMap","resource_version":"42",
//	 "changes":[{"path":"data.level","old":"info","new":"debug"}]}
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o changelog.wasm .
package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {}

// cfg is the plugin's configuration, with its defaults; the host refuses a
// config with other keys or types when it loads the plugin.
var cfg = config{Fields: []string{"spec", "data"}, MaxChanges: 50}

func init() {
	sdk.Config(&cfg)
	sdk.Handle(handle)
}

type config struct {
	Fields     []string `json:"fields"`
	MaxChanges int      `json:"max_changes"`
	FullDecode bool     `json:"full_decode"`
}

// Change is one changed path; Old or New is absent when the path was added
// or removed.
type Change struct {
	Path string `json:"path"`
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
}

type record struct {
	Key             string   `json:"key"`
	Kind            string   `json:"kind"`
	ResourceVersion string   `json:"resource_version"`
	Changes         []Change `json:"changes"`
	Omitted         int      `json:"omitted,omitempty"` // changes over max_changes
}

// maxValue bounds a string value in a change; longer ones are cut.
const maxValue = 256

func handle(ev sdk.Event) error {
	if ev.Type != sdk.Updated {
		return nil
	}
	kind, olds, news, err := fields(ev, cfg)
	if err != nil {
		return err
	}
	var changes []Change
	for i, f := range cfg.Fields {
		changes = diff(changes, pathSegment("", f), olds[i], news[i])
	}
	if len(changes) == 0 {
		return nil
	}
	rec := record{Key: ev.Key(), Kind: kind, ResourceVersion: ev.ResourceVersion, Changes: changes}
	if cfg.MaxChanges > 0 && len(changes) > cfg.MaxChanges {
		rec.Changes, rec.Omitted = changes[:cfg.MaxChanges], len(changes)-cfg.MaxChanges
	}
	return sdk.Emit(rec)
}

// fields returns the object's kind and the old and new values of the
// configured fields (nil when absent): by default fetched one by one from
// the host, with full_decode by decoding both whole objects.
func fields(ev sdk.Event, cfg config) (kind string, olds, news []any, err error) {
	if cfg.FullDecode {
		oldObj, err := ev.OldObject()
		if err != nil {
			return "", nil, nil, err
		}
		newObj, err := ev.Object()
		if err != nil {
			return "", nil, nil, err
		}
		for _, f := range cfg.Fields {
			olds, news = append(olds, oldObj[f]), append(news, newObj[f])
		}
		kind, _ = newObj["kind"].(string)
		return kind, olds, news, nil
	}
	for _, f := range cfg.Fields {
		var o, n any
		if v := ev.OldField(f); v.Exists() {
			if err := v.Decode(&o); err != nil {
				return "", nil, nil, err
			}
		}
		if v := ev.Field(f); v.Exists() {
			if err := v.Decode(&n); err != nil {
				return "", nil, nil, err
			}
		}
		olds, news = append(olds, o), append(news, n)
	}
	return ev.Kind(), olds, news, nil
}

// diff appends the changes between two decoded JSON values: maps key by
// key (sorted), lists index by index, anything else as a whole.
func diff(changes []Change, path string, old, new any) []Change {
	switch o := old.(type) {
	case map[string]any:
		if n, ok := new.(map[string]any); ok {
			for _, k := range sortedKeys(o, n) {
				changes = diff(changes, pathSegment(path, k), o[k], n[k])
			}
			return changes
		}
	case []any:
		if n, ok := new.([]any); ok {
			for i := range max(len(o), len(n)) {
				var ov, nv any
				if i < len(o) {
					ov = o[i]
				}
				if i < len(n) {
					nv = n[i]
				}
				changes = diff(changes, path+"["+strconv.Itoa(i)+"]", ov, nv)
			}
			return changes
		}
	}
	if reflect.DeepEqual(old, new) {
		return changes
	}
	return append(changes, Change{Path: path, Old: compact(old), New: compact(new)})
}

func sortedKeys(a, b map[string]any) []string {
	keys := make([]string, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// plainKey reports whether key reads unambiguously after a dot.
func plainKey(key string) bool {
	for i, c := range key {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && (c == '-' || '0' <= c && c <= '9'):
		default:
			return false
		}
	}
	return key != ""
}

// pathSegment appends key to path: "data.level", or data["app.conf"] for
// keys that are not plain.
func pathSegment(path, key string) string {
	if !plainKey(key) {
		b, _ := json.Marshal(key)
		return path + "[" + string(b) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// compact cuts long strings, which are common in ConfigMap data.
func compact(v any) any {
	if s, ok := v.(string); ok && len(s) > maxValue {
		cut := maxValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return s[:cut] + fmt.Sprintf("...(+%d bytes)", len(s)-cut)
	}
	return v
}
