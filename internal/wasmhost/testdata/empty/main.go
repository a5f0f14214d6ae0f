// Command empty is a plugin that does nothing, to measure the fixed cost of
// a call through the SDK.
package main

import "github.com/faro-dev/faro/plugins/sdk"

func main() {}

func init() { sdk.Handle(func(sdk.Event) error { return nil }) }
