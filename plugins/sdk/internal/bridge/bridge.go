// Package bridge connects the native (non-wasm) build of the SDK to the test
// harness in plugins/sdk/sdktest: the SDK calls the Host installed here
// where a wasm build would call the faro imports, and registers its dispatch
// function where a wasm build would export faro_handle.
package bridge

// Host mirrors the faro import module of the ABI, one method per import.
type Host interface {
	ReadInput() []byte
	GetField(pointer string) ([]byte, bool)
	GetChanges(pointer string) ([]byte, bool)
	GetConfig() ([]byte, bool)
	Emit(record []byte) int32
	SetError(msg string)
	Log(level int32, msg string)
	HTTPPost(url string, body []byte) (int32, []byte)
}

var (
	current  Host
	dispatch func(inputLen int) int32
)

// SetDispatch is called by sdk.Handle.
func SetDispatch(fn func(inputLen int) int32) { dispatch = fn }

// Dispatch runs the registered handler with h serving the SDK's host calls.
// ok is false when no handler is registered. Callers serialise calls.
func Dispatch(h Host, inputLen int) (status int32, ok bool) {
	if dispatch == nil {
		return 0, false
	}
	current = h
	defer func() { current = nil }()
	return dispatch(inputLen), true
}

// Current is the Host of the running Dispatch; it panics outside one, which
// is where a wasm build would trap.
func Current() Host {
	if current == nil {
		panic("sdk: called outside a handler run by a Faro host or by sdktest")
	}
	return current
}
