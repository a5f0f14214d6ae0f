//go:build !wasip1

package sdk

import "github.com/faro-dev/faro/plugins/sdk/internal/bridge"

// Outside wasm the SDK talks to whatever sdktest installed in bridge; the
// calls map one to one onto the wasm imports in transport_wasip1.go.

func registerDispatch() { bridge.SetDispatch(dispatch) }

// configAtInit is false: the native harness serves a configuration per run,
// so a configuration declared in init is decoded before each run.
func configAtInit() bool { return false }

func hostReadInput(int) []byte { return bridge.Current().ReadInput() }

func hostGetField(pointer []byte) ([]byte, bool) { return bridge.Current().GetField(string(pointer)) }

func hostGetChanges(pointer []byte) ([]byte, bool) {
	return bridge.Current().GetChanges(string(pointer))
}

func hostGetConfig() ([]byte, bool) { return bridge.Current().GetConfig() }

func hostEmit(rec []byte) int32 { return bridge.Current().Emit(rec) }

func hostSetError(msg string) { bridge.Current().SetError(msg) }

func hostLog(level int32, msg string) { bridge.Current().Log(level, msg) }

func hostHTTPPost(url string, body []byte) (int32, []byte) {
	return bridge.Current().HTTPPost(url, body)
}
