// Package sdk is the guest side of Faro's WebAssembly handler plugins: a Go
// plugin imports it, registers one handler with Handle, and is built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o my.wasm .
//
// In Faro's pipeline (informers -> filters/rules -> queue -> worker) every
// event a resources entry matches is handed, in order, to that entry's
// plugins; the host (internal/wasmhost) calls the plugin's handler once per
// event. The handler reads the event (Event, Event.Field), emits records
// (Emit) that Faro writes as "PLUGIN [name] ..." lines, logs (Logger), reads
// its configuration (Config) and, when granted, posts to HTTP endpoints
// through the host (HTTPPost). The wasm exports, imports and buffers of the
// ABI (see ABI.md) are hidden here.
//
// Outside wasm (plain go test) the same calls are served by the native
// harness in plugins/sdk/sdktest, so plugin logic is unit-tested without a
// wasm toolchain.
//
// Rules: start no goroutine that outlives the handler call, and keep no state
// you rely on across events (the host may run several instances of a plugin
// and replaces them at any time).
package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strings"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// Event types.
const (
	Added   = "ADDED"
	Updated = "UPDATED"
	Deleted = "DELETED"
)

// Errors returned by Emit, HTTPPost and Value.Decode.
var (
	ErrInvalid     = errors.New("sdk: rejected by the host as invalid")
	ErrOutputLimit = errors.New("sdk: per-event output limit reached")
	ErrNotAllowed  = errors.New("sdk: host not in the plugin's allowed_hosts")
	ErrHTTPFailed  = errors.New("sdk: HTTP request failed or timed out")
	ErrBodyTooBig  = errors.New("sdk: HTTP request body too large")
	ErrNotFound    = errors.New("sdk: no value at that path")
)

// Event is one matched Kubernetes event. Its scalar fields are decoded
// eagerly; the objects stay on the host until asked for, with Field (one
// field, cheap) or Object (whole object, a full JSON decode in the guest).
// An Event is only valid during the handler call it was passed to.
// Its fields are those of abi.Header, the one definition of the event's
// scalar fields that host, SDK and test harnesses share.
type Event abi.Header

// Key is "namespace/name", or "name" for cluster-scoped objects.
func (e Event) Key() string {
	if e.Namespace == "" {
		return e.Name
	}
	return e.Namespace + "/" + e.Name
}

// Kind is the object's kind ("ConfigMap"), read through Field.
func (e Event) Kind() string { return e.Field("kind").String() }

// Field returns one field of the current object, addressed by its path
// segments (map keys or decimal array indexes), without decoding the rest:
// the host, which already holds the object decoded, sends only that field.
// Field() with no segments is the whole object.
//
//	ev.Field("spec", "replicas")
//	ev.Field("metadata", "labels", "app.kubernetes.io/name")
//	ev.Field("spec", "template", "spec", "containers", "0", "image")
func (e Event) Field(path ...string) Value { return fetchField("object", path) }

// OldField is Field on the previous version of the object (Updated events
// only; for other events nothing exists).
func (e Event) OldField(path ...string) Value { return fetchField("old_object", path) }

// Object decodes the whole current object. Decoding JSON is the dominant
// cost of a Go plugin; prefer Field when a few fields are enough.
func (e Event) Object() (map[string]any, error) { return decodeMap(e.Field()) }

// OldObject decodes the whole previous object; nil for events other than
// Updated.
func (e Event) OldObject() (map[string]any, error) { return decodeMap(e.OldField()) }

// Change is one difference between the previous and the current object:
// its path below the field Changes was asked for, and the old and new
// values there (a Value that does not exist where the path was added or
// removed).
type Change struct {
	Path     []PathElem
	Old, New Value
}

// PathElem is one step of a Change's path: a map key, or a list index when
// Index is not -1.
type PathElem = abi.PathElem

// Changes lists what changed in one field between the previous and the
// current object, addressed as by Field (for events without a previous
// object, the whole field is one new value): maps key by key (sorted), lists index by index, other values as a
// whole. The host, which holds both objects decoded, compares them and
// sends only the changed values, so nothing unchanged is decoded: the
// cheapest way to a diff. Changes() with no segments compares the whole
// objects.
func (e Event) Changes(path ...string) ([]Change, error) {
	var buf [256]byte
	raw, ok := hostGetChanges(abi.AppendPointer(buf[:0], path...))
	if !ok {
		return nil, ErrNotFound
	}
	cs, err := abi.ParseChanges(raw)
	if err != nil {
		return nil, err
	}
	out := make([]Change, len(cs))
	for i, c := range cs {
		out[i] = Change{Path: c.Path, Old: Value{raw: c.Old}, New: Value{raw: c.New}}
	}
	return out, nil
}

func decodeMap(v Value) (map[string]any, error) {
	if !v.Exists() {
		return nil, nil
	}
	var m map[string]any
	return m, v.Decode(&m)
}

func fetchField(root string, path []string) Value {
	// Allocations are dear in a Go guest (about 1µs each): the pointer is
	// built on the stack.
	var buf [256]byte
	pointer := abi.AppendPointer(append(append(buf[:0], '/'), root...), path...)
	raw, ok := hostGetField(pointer)
	if !ok {
		return Value{}
	}
	return Value{raw: raw}
}

// Value is one field of an event's object as JSON; the zero Value is a
// field that does not exist.
type Value struct{ raw []byte }

// Exists reports whether the field is present (a JSON null is present).
func (v Value) Exists() bool { return v.raw != nil }

// Raw is the field's JSON text, nil if it does not exist.
func (v Value) Raw() json.RawMessage { return v.raw }

// String is the value of a JSON string field; "" for a missing field or any
// other JSON type.
func (v Value) String() string {
	if len(v.raw) < 2 || v.raw[0] != '"' {
		return ""
	}
	if s := v.raw[1 : len(v.raw)-1]; !bytes.ContainsAny(s, `\"`) {
		return string(s)
	}
	var s string
	if json.Unmarshal(v.raw, &s) != nil {
		return ""
	}
	return s
}

// Decode unmarshals the field into dst with encoding/json; ErrNotFound if
// the field does not exist.
func (v Value) Decode(dst any) error {
	if v.raw == nil {
		return ErrNotFound
	}
	return json.Unmarshal(v.raw, dst)
}

// Handle registers the plugin's event handler; call it from an init
// function (a wasm reactor never runs main). A module that registers none
// is refused at load. A returned error is reported to Faro, which retries
// the event with backoff; a panic fails the event with the kind "panic",
// which Faro does not retry unless the plugin's retry_on says so.
func Handle(fn func(ev Event) error) {
	handler = fn
	registerDispatch()
}

var handler func(Event) error

// errNoHandler is what the host reports for a module that never called
// Handle.
const errNoHandler = "registers no handler: call sdk.Handle in init"

// dispatch runs the handler for one event whose header is inputLen bytes
// long; the host's faro_handle call (or the native harness) lands here.
func dispatch(inputLen int) int32 {
	if handler == nil {
		hostSetError(errNoHandler)
		return abi.StatusError
	}
	if err := prepareConfig(); err != nil {
		hostSetError(err.Error())
		return abi.StatusConfig
	}
	h, err := abi.ParseHeader(hostReadInput(inputLen))
	if err == nil {
		inHandler = true
		err = safeCall(handler, Event(h))
		inHandler = false
	}
	var pe panicError
	if errors.As(err, &pe) {
		hostSetError(err.Error())
		return abi.StatusPanic
	}
	if err != nil {
		hostSetError(err.Error())
		return abi.StatusError
	}
	return abi.StatusOK
}

// inHandler is true while the handler runs.
var inHandler bool

func safeCall(fn func(Event) error, ev Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			hostLog(int32(slog.LevelError), fmt.Sprintf("panic: %v\n%s", r, debug.Stack()))
			err = panicError{r}
		}
	}()
	return fn(ev)
}

// panicError is a recovered panic of the handler.
type panicError struct{ value any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// Emit sends one record for this event: a value marshalled with
// encoding/json (or a json.RawMessage) that must be a JSON object. Faro
// writes it as a "PLUGIN [name] ..." line. The host caps records per event;
// past the cap Emit returns ErrOutputLimit and the event fails.
func Emit(record any) error {
	var b []byte
	switch r := record.(type) {
	case json.RawMessage:
		b = r
	default:
		var err error
		if b, err = json.Marshal(record); err != nil {
			return fmt.Errorf("sdk: emit: %w", err)
		}
	}
	switch hostEmit(b) {
	case 0:
		return nil
	case abi.ErrLimit:
		return ErrOutputLimit
	default:
		return fmt.Errorf("%w: a record must be a JSON object, got %s", ErrInvalid, abi.JSONKind(b))
	}
}

// Config decodes the plugin's configuration (the "config" value of its entry
// in Faro's config file) into v, a pointer, strictly: a key v has no field
// for, or a value of the wrong type, is an error naming the key. Without a
// configuration v keeps the values it had.
//
// Called from an init function, Config declares the plugin's configuration:
// the host decodes it when it loads the plugin and refuses the plugin, with
// the error naming the key, if it does not fit; the handler then reads v.
// The values v holds at that call are the defaults. Under the native harness
// (sdktest), which serves a configuration per run, v is decoded afresh from
// the defaults before every run, so read it in the handler, not in init.
//
// Called from the handler, Config decodes into v then and there.
func Config(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("sdk: config: want a non-nil pointer, got %T", v)
	}
	if inHandler {
		return decodeConfig(v)
	}
	defaults, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("sdk: config: defaults: %w", err)
	}
	conf = declared{target: v, defaults: defaults}
	if !configAtInit() {
		return nil // decoded before each run: prepareConfig
	}
	conf.err = decodeConfig(v)
	return conf.err
}

// declared is the configuration declared by Config in init.
type declared struct {
	target   any
	defaults []byte // the target's JSON when declared
	err      error  // decoding it failed
}

var conf declared

// prepareConfig decodes the declared configuration before a run where the
// transport serves a configuration per run (the native harness), starting
// from the defaults; elsewhere it reports the error of the decode at init.
func prepareConfig() error {
	if conf.target == nil || configAtInit() {
		return conf.err
	}
	rv := reflect.ValueOf(conf.target).Elem()
	rv.SetZero()
	if err := json.Unmarshal(conf.defaults, conf.target); err != nil {
		return fmt.Errorf("sdk: config: defaults: %w", err)
	}
	return decodeConfig(conf.target)
}

// decodeConfig decodes the host's configuration into v strictly.
func decodeConfig(v any) error {
	raw, ok := hostGetConfig()
	if !ok {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %s", configProblem(err))
	}
	return nil
}

// configProblem says which key of the configuration err is about.
func configProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("key %q: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	if key, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown key " + key
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// HTTPPost posts body (as application/json) to url through the host, which
// only allows hosts listed in the plugin's allowed_hosts, applies the event's
// timeout and caps both bodies. A non-2xx status is not an error; the
// response body is truncated to 64 KiB.
func HTTPPost(url string, body []byte) (status int, resp []byte, err error) {
	code, resp := hostHTTPPost(url, body)
	switch {
	case code >= 0:
		return int(code), resp, nil
	case code == abi.ErrDenied:
		err = ErrNotAllowed
	case code == abi.ErrLimit:
		err = ErrBodyTooBig
	case code == abi.ErrInvalid:
		err = fmt.Errorf("%w: not a plain http(s) URL", ErrInvalid)
	default:
		err = ErrHTTPFailed
	}
	return 0, nil, err
}
