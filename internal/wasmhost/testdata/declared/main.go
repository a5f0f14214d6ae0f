// Command declared is a test plugin that declares its configuration in
// init and registers its handler only when the configuration says so, to
// test the checks the host makes at load.
package main

import "github.com/faro-dev/faro/plugins/sdk"

func main() {}

type config struct {
	Handler  bool   `json:"handler"`
	Greeting string `json:"greeting"`
}

var cfg = config{Handler: true, Greeting: "hello"}

func init() {
	sdk.Config(&cfg)
	if cfg.Handler {
		sdk.Handle(func(sdk.Event) error { return sdk.Emit(cfg) })
	}
}
