// Command myplugin is a minimal Faro plugin in a module of its own: it emits
// one record per event with the object's key, kind, the configured label
// and the configured field.
package main

import (
	"encoding/json"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {} // never called: a plugin is a WASI reactor

type config struct {
	Label string `json:"label"`
	Field string `json:"field"`
}

var cfg = config{Label: "default", Field: "data"}

func init() {
	sdk.Config(&cfg)
	sdk.Handle(handle)
}

type record struct {
	Event string          `json:"event"`
	Key   string          `json:"key"`
	Kind  string          `json:"kind"`
	Label string          `json:"label"`
	Value json.RawMessage `json:"value,omitempty"`
}

func handle(ev sdk.Event) error {
	rec := record{Event: ev.Type, Key: ev.Key(), Kind: ev.Kind(), Label: cfg.Label, Value: ev.Field(cfg.Field).Raw()}
	sdk.LogInfo("handled", "key", rec.Key)
	return sdk.Emit(rec)
}
