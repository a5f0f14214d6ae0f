// Command slow is a test plugin that takes 20ms per event and emits the
// resource version it handled: the e2e tests put it behind a hot object.
package main

import (
	"time"

	"github.com/faro-dev/faro/plugins/sdk"
)

func main() {}

func init() {
	sdk.Handle(func(ev sdk.Event) error {
		time.Sleep(20 * time.Millisecond)
		return sdk.Emit(map[string]any{"key": ev.Key(), "rv": ev.Field("metadata", "resourceVersion").String()})
	})
}
