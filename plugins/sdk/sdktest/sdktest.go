// Package sdktest runs a Go plugin's handler natively, without wasm, so its
// logic is unit-tested with plain go test. The plugin package registers its
// handler with sdk.Handle in an init function as usual; the harness feeds it
// events and records what it emits, logs and posts, applying the same
// record checks and limits as the real host (internal/wasmhost).
//
//	res := sdktest.Harness{Config: map[string]any{"fields": []string{"data"}}}.Run(sdktest.Event{
//		Header:    abi.Header{Type: sdk.Updated, GVR: "v1/configmaps"},
//		Object:    sdktest.Object(`{"kind":"ConfigMap","data":{"a":"2"}}`),
//		OldObject: sdktest.Object(`{"kind":"ConfigMap","data":{"a":"1"}}`),
//	})
//
// To run the built .wasm through the real host instead, see
// plugins/sdk/wasmtest.
package sdktest

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/faro-dev/faro/plugins/sdk"
	"github.com/faro-dev/faro/plugins/sdk/abi"
	"github.com/faro-dev/faro/plugins/sdk/internal/bridge"
)

// Event is the event handed to the handler: the event Faro's engine
// passes to plugins (abi.Event).
type Event = abi.Event

// Harness holds what the host would provide besides the event.
type Harness struct {
	// Timeout bounds one run; 0 means DefaultTimeout. A handler still
	// running then fails the run with the kind "timeout", and later runs of
	// the test binary fail until it returns.
	Timeout time.Duration
	// Config is marshalled to JSON and served to sdk.Config; nil means no
	// configuration.
	Config any
	// HTTP answers sdk.HTTPPost. Nil answers every request with 200 and an
	// empty body. Returning sdk.ErrNotAllowed mimics a host outside
	// allowed_hosts; any other error a failed request.
	HTTP func(url string, body []byte) (status int, resp []byte, err error)
}

// DefaultTimeout is a Harness's Timeout when it sets none: longer than
// Faro's 1s default, since tests may run slowly (-race, busy machines).
const DefaultTimeout = 10 * time.Second

// Result is what one handler call produced.
type Result struct {
	Records  []json.RawMessage // emitted records, in order
	Logs     []Log             // log lines, including panic stacks
	Requests []Request         // HTTP posts, in order, including refused ones
	Err      error             // why the run failed (a panic becomes one), nil if it did not
	// Kind is how the run failed, in Faro's failure kinds: "error" (the
	// handler's error), "panic", "output" (output limits), "config" (the
	// configuration does not fit what the plugin declared), "timeout", or
	// through the real host also "trap" and "out-of-memory"; "" on success.
	Kind string
}

// Log is one log line.
type Log struct {
	Level slog.Level
	Msg   string
}

// Request is one sdk.HTTPPost call.
type Request struct {
	URL  string
	Body []byte
}

// Object parses a JSON object literal, for building events in tests; it
// panics on invalid JSON.
func Object(js string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		panic(fmt.Sprintf("sdktest.Object: %v", err))
	}
	return m
}

// Run runs ev through the handler with no configuration.
func Run(ev Event) Result { return Harness{}.Run(ev) }

// running holds a token while a run is in progress: the SDK's native
// transport is process-global, like a wasm instance that serves one call at
// a time.
var running = make(chan struct{}, 1)

// Run calls the registered handler once with ev, for at most h.Timeout.
func (h Harness) Run(ev Event) Result {
	timeout := h.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case running <- struct{}{}:
	case <-timer.C:
		return Result{Kind: "timeout", Err: errors.New("sdktest: an earlier run's handler is still running past its timeout")}
	}
	done := make(chan Result, 1)
	go func() {
		defer func() { <-running }()
		done <- h.run(ev)
	}()
	select {
	case res := <-done:
		return res
	case <-timer.C:
		return Result{Kind: "timeout", Err: fmt.Errorf("sdktest: handler still running after %s", timeout)}
	}
}

func (h Harness) run(ev Event) Result {
	c := &call{h: h, ev: ev, input: abi.AppendHeader(nil, &ev.Header)}
	if h.Config != nil {
		var err error
		if c.config, err = json.Marshal(h.Config); err != nil {
			return Result{Kind: "config", Err: fmt.Errorf("sdktest: config: %w", err)}
		}
	}
	status, ok := bridge.Dispatch(c, len(c.input))
	switch {
	case !ok:
		c.res.Kind, c.res.Err = "error", errors.New("sdktest: the plugin registers no handler: call sdk.Handle in init")
	case c.failed != nil:
		c.res.Kind, c.res.Err = "output", c.failed
	case status == abi.StatusOK:
	default:
		c.res.Kind, c.res.Err = statusKinds[status], errors.New(c.errMsg)
	}
	if c.res.Err != nil {
		c.res.Records = nil // the host drops the records of a failed event
	}
	return c.res
}

// statusKinds are the failure kinds of handler statuses.
var statusKinds = map[int32]string{abi.StatusError: "error", abi.StatusPanic: "panic", abi.StatusConfig: "config"}

// call implements bridge.Host for one Run.
type call struct {
	h      Harness
	ev     Event
	input  []byte
	config []byte
	res    Result
	out    int
	errMsg string
	failed error // an output limit was hit: the host fails the event
}

func (c *call) ReadInput() []byte { return c.input }

// GetField answers as the host does, with abi.Event.FieldJSON.
func (c *call) GetField(pointer string) ([]byte, bool) {
	b, err := c.ev.FieldJSON(pointer)
	return b, b != nil && err == nil
}

func (c *call) GetChanges(pointer string) ([]byte, bool) {
	return abi.AppendChanges(nil, abi.ChangesAt(c.ev.OldObject, c.ev.Object, pointer)), true
}

func (c *call) GetConfig() ([]byte, bool) { return c.config, c.config != nil }

func (c *call) Emit(rec []byte) int32 {
	if !abi.ValidRecord(rec) {
		return abi.ErrInvalid
	}
	if err := abi.OutputError(len(c.res.Records), c.out, len(rec)); err != nil {
		c.failed = err
		return abi.ErrLimit
	}
	c.out += len(rec)
	c.res.Records = append(c.res.Records, append(json.RawMessage(nil), rec...))
	return 0
}

func (c *call) SetError(msg string) { c.errMsg = msg }

func (c *call) Log(level int32, msg string) {
	c.res.Logs = append(c.res.Logs, Log{Level: slog.Level(level), Msg: msg})
}

func (c *call) HTTPPost(url string, body []byte) (int32, []byte) {
	c.res.Requests = append(c.res.Requests, Request{URL: url, Body: append([]byte(nil), body...)})
	if len(body) > abi.MaxHTTPBody {
		return abi.ErrLimit, nil
	}
	if c.h.HTTP == nil {
		return 200, nil
	}
	status, resp, err := c.h.HTTP(url, body)
	switch {
	case errors.Is(err, sdk.ErrNotAllowed):
		return abi.ErrDenied, nil
	case err != nil:
		return abi.ErrFailed, nil
	}
	return int32(status), resp[:min(len(resp), abi.MaxHTTPResponse)]
}
