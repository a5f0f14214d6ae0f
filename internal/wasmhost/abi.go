package wasmhost

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// The host side of the ABI: the faro import module (plugins/sdk/ABI.md).
// Host functions find the state of the running call in their context; a
// guest that breaks the ABI (a bad pointer, a call outside faro_handle)
// makes the function panic, which wazero turns into a trap of that call.

var i32 = api.ValueTypeI32

type hostFunc struct {
	params, results []api.ValueType
	fn              api.GoModuleFunc
}

var hostFuncs = map[string]hostFunc{
	abi.ImportReadInput:  {[]api.ValueType{i32}, nil, readInput},
	abi.ImportGetField:   {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, getField},
	abi.ImportGetChanges: {[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, getChanges},
	abi.ImportGetConfig:  {[]api.ValueType{i32, i32}, []api.ValueType{i32}, getConfig},
	abi.ImportEmit:       {[]api.ValueType{i32, i32}, []api.ValueType{i32}, emit},
	abi.ImportSetError:   {[]api.ValueType{i32, i32}, nil, setError},
	abi.ImportLog:        {[]api.ValueType{i32, i32, i32}, nil, logLine},
	abi.ImportHTTPPost:   {[]api.ValueType{i32, i32, i32, i32, i32, i32, i32}, []api.ValueType{i32}, httpPost},
}

// hostModule defines Faro's host functions in rt.
func hostModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder(abi.HostModule)
	for name, f := range hostFuncs {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(name)
	}
	return b
}

// Per-call limits besides those in package abi.
const (
	maxLogPerCall = 64 << 10 // bytes of log messages; the rest is counted and dropped
	maxErrorMsg   = 4 << 10  // bytes of a set_error message
	maxPointer    = 4 << 10  // bytes of a get_field pointer
	maxURL        = 8 << 10  // bytes of an http_post URL
)

// callState is what the host functions see of the call in progress. It is
// per instance and reset by begin; during _initialize only p is set.
type callState struct {
	p          *Plugin
	ctx        context.Context
	ev         *Event
	input      []byte // the event header, reused across calls
	records    []json.RawMessage
	outBytes   int
	failure    error // output limit hit: the event fails with KindOutput
	errMsg     string
	logBytes   int
	logDropped int
	// The last get_field and get_changes answers: the SDK asks twice for
	// answers bigger than its scratch buffer.
	lastField, lastChanges lastAnswer
}

// lastAnswer is a host function's last answer and the pointer it answered.
type lastAnswer struct {
	pointer string
	val     []byte
}

type callKey struct{}

func withCall(ctx context.Context, cs *callState) context.Context {
	return context.WithValue(ctx, callKey{}, cs)
}

func stateOf(ctx context.Context) *callState { return ctx.Value(callKey{}).(*callState) }

// inCall is stateOf for functions that only make sense during faro_handle.
func inCall(ctx context.Context, fn string) *callState {
	cs := stateOf(ctx)
	if cs.ev == nil {
		panic(fmt.Errorf("faro.%s called outside %s", fn, abi.ExportHandle))
	}
	return cs
}

func (cs *callState) begin(ev *Event) {
	cs.ev = ev
	cs.input = abi.AppendHeader(cs.input[:0], &ev.Header)
	cs.records, cs.outBytes, cs.failure, cs.errMsg = nil, 0, nil, ""
	cs.logBytes, cs.logDropped = 0, 0
	cs.lastField, cs.lastChanges = lastAnswer{}, lastAnswer{}
}

// end closes the call and returns its records and output failure.
func (cs *callState) end() ([]json.RawMessage, error) {
	if cs.logDropped > 0 {
		cs.p.log.Warn("plugin log lines dropped over the per-event budget", "lines", cs.logDropped, "budget_bytes", maxLogPerCall)
	}
	records := cs.records
	cs.ev, cs.records, cs.lastField, cs.lastChanges = nil, nil, lastAnswer{}, lastAnswer{}
	return records, cs.failure
}

func read(m api.Module, fn string, ptr, n uint64) []byte {
	b, ok := m.Memory().Read(uint32(ptr), uint32(n))
	if !ok {
		panic(fmt.Errorf("faro.%s: range [%d, +%d) outside guest memory", fn, uint32(ptr), uint32(n)))
	}
	return b
}

func write(m api.Module, fn string, ptr uint64, b []byte) {
	if !m.Memory().Write(uint32(ptr), b) {
		panic(fmt.Errorf("faro.%s: range [%d, +%d) outside guest memory", fn, uint32(ptr), len(b)))
	}
}

// answer follows the ABI's buffer protocol: write val at ptr if it fits in
// bufCap bytes and return its length either way; ErrNotFound for nil.
func answer(m api.Module, fn string, ptr, bufCap uint64, val []byte) uint64 {
	if val == nil {
		return api.EncodeI32(abi.ErrNotFound)
	}
	if uint64(len(val)) <= uint64(uint32(bufCap)) {
		write(m, fn, ptr, val)
	}
	return api.EncodeI32(int32(len(val)))
}

// read_input(ptr): copy the event header (handle's input_len bytes).
func readInput(ctx context.Context, m api.Module, stack []uint64) {
	write(m, abi.ImportReadInput, stack[0], inCall(ctx, abi.ImportReadInput).input)
}

// get_field(path_ptr, path_len, buf_ptr, buf_cap) -> len | ErrNotFound
var getField = byPointer(abi.ImportGetField, func(cs *callState) *lastAnswer { return &cs.lastField }, (*callState).field)

// get_changes(path_ptr, path_len, buf_ptr, buf_cap) -> len | ErrNotFound
var getChanges = byPointer(abi.ImportGetChanges, func(cs *callState) *lastAnswer { return &cs.lastChanges },
	func(cs *callState, pointer string) []byte {
		return abi.AppendChanges(nil, abi.ChangesAt(cs.ev.OldObject, cs.ev.Object, pointer))
	})

// byPointer is a host function that answers a JSON pointer with
// compute(pointer), following the buffer protocol; the last answer is kept
// in *last for the SDK's second call when it did not fit.
func byPointer(fn string, last func(*callState) *lastAnswer, compute func(cs *callState, pointer string) []byte) api.GoModuleFunc {
	return func(ctx context.Context, m api.Module, stack []uint64) {
		cs := inCall(ctx, fn)
		p := read(m, fn, stack[0], stack[1])
		if len(p) > maxPointer {
			stack[0] = api.EncodeI32(abi.ErrNotFound)
			return
		}
		l := last(cs)
		if pointer := string(p); pointer != l.pointer || l.val == nil {
			l.pointer, l.val = pointer, compute(cs, pointer)
		}
		stack[0] = answer(m, fn, stack[2], stack[3], l.val)
	}
}

// get_config(buf_ptr, buf_cap) -> len | ErrNotFound
func getConfig(ctx context.Context, m api.Module, stack []uint64) {
	stack[0] = answer(m, abi.ImportGetConfig, stack[0], stack[1], stateOf(ctx).p.spec.Config)
}

// emit(ptr, len) -> 0 | ErrInvalid | ErrLimit
func emit(ctx context.Context, m api.Module, stack []uint64) {
	cs := inCall(ctx, abi.ImportEmit)
	rec := read(m, abi.ImportEmit, stack[0], stack[1])
	switch {
	case cs.failure != nil:
		stack[0] = api.EncodeI32(abi.ErrLimit)
	case abi.OutputError(len(cs.records), cs.outBytes, len(rec)) != nil:
		cs.failure = abi.OutputError(len(cs.records), cs.outBytes, len(rec))
		cs.records = nil
		stack[0] = api.EncodeI32(abi.ErrLimit)
	case !abi.ValidRecord(rec):
		stack[0] = api.EncodeI32(abi.ErrInvalid)
	default:
		cs.outBytes += len(rec)
		cs.records = append(cs.records, append(json.RawMessage(nil), rec...))
		stack[0] = 0
	}
}

// set_error(ptr, len): the message of a StatusError or StatusPanic, of
// faro_handle or of faro_check.
func setError(ctx context.Context, m api.Module, stack []uint64) {
	msg := read(m, abi.ImportSetError, stack[0], stack[1])
	stateOf(ctx).errMsg = string(abi.Truncate(msg, maxErrorMsg))
}

// log(level, ptr, len): level is a log/slog level.
func logLine(ctx context.Context, m api.Module, stack []uint64) {
	cs := stateOf(ctx)
	msg := read(m, abi.ImportLog, stack[1], stack[2])
	if cs.logBytes+len(msg) > maxLogPerCall {
		cs.logDropped++
		return
	}
	cs.logBytes += len(msg)
	cs.p.log.Log(hclogLevel(slog.Level(api.DecodeI32(stack[0]))), string(msg))
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelDebug:
		return hclog.Trace
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}

// http_post(url_ptr, url_len, body_ptr, body_len, resp_ptr, resp_cap,
// resp_len_ptr) -> HTTP status | ErrInvalid | ErrLimit | ErrDenied | ErrFailed
func httpPost(ctx context.Context, m api.Module, stack []uint64) {
	cs := inCall(ctx, abi.ImportHTTPPost)
	url := read(m, abi.ImportHTTPPost, stack[0], stack[1])
	body := read(m, abi.ImportHTTPPost, stack[2], stack[3])
	var status int32
	var resp []byte
	switch {
	case len(url) > maxURL:
		status = abi.ErrInvalid
	case len(body) > abi.MaxHTTPBody:
		cs.p.log.Warn("plugin HTTP post refused: body too large", "bytes", len(body), "max", abi.MaxHTTPBody)
		status = abi.ErrLimit
	default:
		// The body is copied: the transport may still read it after Do
		// returns, when the guest owns its memory again.
		status, resp = cs.p.post(cs.ctx, string(url), append([]byte(nil), body...))
	}
	if status >= 0 {
		write(m, abi.ImportHTTPPost, stack[4], resp[:min(len(resp), int(uint32(stack[5])))])
		write(m, abi.ImportHTTPPost, stack[6], binary.LittleEndian.AppendUint32(nil, uint32(len(resp))))
	}
	stack[0] = api.EncodeI32(status)
}

// field returns the JSON of the value a get_field pointer names in the
// event document, nil if there is none: abi.Event.FieldJSON, which sdktest
// answers with too. Pointers into the objects walk what the engine already
// decoded.
func (cs *callState) field(pointer string) []byte {
	b, err := cs.ev.FieldJSON(pointer)
	if err != nil {
		cs.p.log.Warn("cannot encode event field for plugin", "pointer", pointer, "error", err)
		return nil
	}
	return b
}
