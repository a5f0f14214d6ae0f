// Command changelog is a Faro plugin that, for UPDATED events, emits the
// changed paths of the object with their old and new values: a compact diff
// limited to the configured top-level fields.
//
// Config:
//
//	fields: [spec, data]  # top-level fields to compare (default spec, data)
//	max_changes: 50       # changes listed per event; the rest are counted
//	full_decode: false    # decode whole objects instead of asking the host
//	                      # for the changes; only useful to compare the costs
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
	"strconv"
	"unicode/utf8"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
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
// or removed (or holds null).
type Change struct {
	Path     string
	Old, New json.RawMessage // valid JSON from the host, or nil
}

// record is what the plugin emits for an event; appendJSON encodes it.
type record struct {
	Key             string
	Kind            string
	ResourceVersion string
	Changes         []Change
	Omitted         int // changes over max_changes
}

// maxValue bounds a string value in a change; longer ones are cut.
const maxValue = 256

func handle(ev sdk.Event) error {
	if ev.Type != sdk.Updated {
		return nil
	}
	var changes []Change
	for _, f := range cfg.Fields {
		cs, err := fieldChanges(ev, f)
		if err != nil {
			return err
		}
		for _, c := range cs {
			path := pathSegment("", f)
			for _, e := range c.Path {
				if e.Index >= 0 {
					path += "[" + strconv.Itoa(e.Index) + "]"
				} else {
					path = pathSegment(path, e.Key)
				}
			}
			changes = append(changes, Change{Path: path, Old: compact(c.Old), New: compact(c.New)})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	rec := record{Key: ev.Key(), Kind: ev.Kind(), ResourceVersion: ev.ResourceVersion, Changes: changes}
	if cfg.MaxChanges > 0 && len(changes) > cfg.MaxChanges {
		rec.Changes, rec.Omitted = changes[:cfg.MaxChanges], len(changes)-cfg.MaxChanges
	}
	return sdk.Emit(json.RawMessage(rec.appendJSON(nil)))
}

// appendJSON appends the record's JSON to b. It is written out by hand
// because encoding/json's reflection is, in a wasm guest, dearer than the
// rest of the event's handling: most of it is code a call runs cold, between
// the host's other work.
func (r *record) appendJSON(b []byte) []byte {
	b = append(b, `{"key":`...)
	b = appendString(b, r.Key)
	b = append(b, `,"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"resource_version":`...)
	b = appendString(b, r.ResourceVersion)
	b = append(b, `,"changes":[`...)
	for i, c := range r.Changes {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"path":`...)
		b = appendString(b, c.Path)
		if c.Old != nil {
			b = append(append(b, `,"old":`...), c.Old...)
		}
		if c.New != nil {
			b = append(append(b, `,"new":`...), c.New...)
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if r.Omitted > 0 {
		b = strconv.AppendInt(append(b, `,"omitted":`...), int64(r.Omitted), 10)
	}
	return append(b, '}')
}

// appendString appends s as a JSON string: quote, backslash and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+n]...)
			}
			i += n
			continue
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

// fieldChanges lists the changes of one top-level field: by default
// compared on the host, which sends only what changed; with full_decode
// from both whole objects decoded here.
func fieldChanges(ev sdk.Event, field string) ([]abi.Change, error) {
	if !cfg.FullDecode {
		cs, err := ev.Changes(field)
		out := make([]abi.Change, len(cs))
		for i, c := range cs {
			out[i] = abi.Change{Path: c.Path, Old: c.Old.Raw(), New: c.New.Raw()}
		}
		return out, err
	}
	oldObj, err := ev.OldObject()
	if err != nil {
		return nil, err
	}
	newObj, err := ev.Object()
	if err != nil {
		return nil, err
	}
	return abi.ChangesAt(oldObj, newObj, string(abi.AppendPointer(nil, field))), nil
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

// compact cuts long strings, which are common in ConfigMap data; null is
// left out like an absent value.
func compact(v json.RawMessage) json.RawMessage {
	if len(v) <= maxValue || v[0] != '"' {
		if string(v) == "null" {
			return nil
		}
		return v
	}
	var s string
	if json.Unmarshal(v, &s) != nil || len(s) <= maxValue {
		return v
	}
	cut := abi.Truncate(s, maxValue)
	b, _ := json.Marshal(cut + fmt.Sprintf("...(+%d bytes)", len(s)-len(cut)))
	return b
}
