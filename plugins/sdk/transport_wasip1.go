//go:build wasip1

package sdk

import (
	"unsafe"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// The wasm side of the ABI (ABI.md). Strings cross as (ptr, len) pairs,
// unsafe.Pointer as an i32 address into this module's memory.

//go:wasmexport faro_abi_version
func abiVersion() int32 { return abi.Version }

//go:wasmexport faro_handle
func handle(inputLen int32) int32 { return dispatch(int(inputLen)) }

// faroCheck reports whether the module is ready for events: a handler is
// registered and the configuration declared in init decoded. The host calls
// it once at load and refuses the module on StatusError.
//
//go:wasmexport faro_check
func faroCheck() int32 {
	switch {
	case handler == nil:
		hostSetError(errNoHandler)
	case conf.err != nil:
		hostSetError(conf.err.Error())
		return abi.StatusConfig
	default:
		return abi.StatusOK
	}
	return abi.StatusError
}

//go:wasmimport faro read_input
func readInput(ptr unsafe.Pointer)

//go:wasmimport faro get_field
//go:noescape
func getField(path unsafe.Pointer, pathLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport faro get_changes
//go:noescape
func getChanges(path unsafe.Pointer, pathLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport faro get_config
//go:noescape
func getConfig(buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport faro emit
func emit(rec unsafe.Pointer, recLen uint32) int32

//go:wasmimport faro set_error
func setError(msg string)

//go:wasmimport faro log
func logLine(level int32, msg string)

//go:wasmimport faro http_post
func httpPost(url string, body unsafe.Pointer, bodyLen uint32, resp unsafe.Pointer, respCap uint32, respLen *uint32) int32

func registerDispatch() {} // faro_handle calls dispatch directly

// configAtInit is true: the host serves the configuration during
// _initialize, so a configuration declared in init is decoded there.
func configAtInit() bool { return true }

// Buffers reused across calls of this instance; a call runs to completion
// before the next starts, so they are never shared.
var (
	inputBuf []byte
	scratch  = make([]byte, 4<<10)
	respBuf  []byte
)

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func hostReadInput(n int) []byte {
	if cap(inputBuf) < n {
		inputBuf = make([]byte, n)
	}
	inputBuf = inputBuf[:n]
	readInput(ptr(inputBuf))
	return inputBuf
}

// hostGetField, hostGetChanges and hostGetConfig follow the ABI's buffer
// protocol: the host writes the result into the buffer when it fits and
// always returns its length (or a negative code), so a second call with a
// big enough buffer follows only for results larger than scratch.
func hostGetField(pointer []byte) ([]byte, bool) { return getByPointer(getField, pointer) }

func hostGetChanges(pointer []byte) ([]byte, bool) { return getByPointer(getChanges, pointer) }

func getByPointer(get func(path unsafe.Pointer, pathLen uint32, buf unsafe.Pointer, bufCap uint32) int32, pointer []byte) ([]byte, bool) {
	n := get(ptr(pointer), uint32(len(pointer)), ptr(scratch), uint32(len(scratch)))
	if n < 0 {
		return nil, false
	}
	if int(n) <= len(scratch) {
		return append([]byte(nil), scratch[:n]...), true
	}
	buf := make([]byte, n)
	if get(ptr(pointer), uint32(len(pointer)), ptr(buf), uint32(len(buf))) != n {
		return nil, false
	}
	return buf, true
}

func hostGetConfig() ([]byte, bool) {
	n := getConfig(ptr(scratch), uint32(len(scratch)))
	if n < 0 {
		return nil, false
	}
	if int(n) <= len(scratch) {
		return append([]byte(nil), scratch[:n]...), true
	}
	buf := make([]byte, n)
	if getConfig(ptr(buf), uint32(len(buf))) != n {
		return nil, false
	}
	return buf, true
}

func hostEmit(rec []byte) int32 { return emit(ptr(rec), uint32(len(rec))) }

func hostSetError(msg string) { setError(msg) }

func hostLog(level int32, msg string) { logLine(level, msg) }

func hostHTTPPost(url string, body []byte) (int32, []byte) {
	if respBuf == nil {
		respBuf = make([]byte, abi.MaxHTTPResponse)
	}
	var n uint32
	code := httpPost(url, ptr(body), uint32(len(body)), ptr(respBuf), uint32(len(respBuf)), &n)
	if code < 0 {
		return code, nil
	}
	return code, append([]byte(nil), respBuf[:min(int(n), len(respBuf))]...)
}
