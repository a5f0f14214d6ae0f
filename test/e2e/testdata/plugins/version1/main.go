// Command version1 is a test plugin that emits {"version": 1} for every
// event: the e2e tests swap it for the other version while Faro runs.
package main

import "github.com/faro-dev/faro/plugins/sdk"

func main() {}

func init() {
	sdk.Handle(func(ev sdk.Event) error {
		return sdk.Emit(map[string]any{"version": 1, "key": ev.Key()})
	})
}
