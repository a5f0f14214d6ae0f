// A plugin in its own module, outside Faro's: TestExternalModule copies this
// directory to a temporary one, points the replace below at the checkout
// under test and runs `go test ./...` in it.
module example.com/myplugin

go 1.26.0

require github.com/faro-dev/faro v0.0.0

replace github.com/faro-dev/faro => ../../../../..
