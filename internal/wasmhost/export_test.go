package wasmhost

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/tetratelabs/wazero/api"
)

// NewUninterruptible is New without the interrupt checks that let a timeout
// stop a running call, for benchmarks measuring their cost.
func NewUninterruptible(opts Options) (*Host, error) {
	return newHost(opts, false)
}

// StartInstance starts and closes one instance of p, for benchmarks.
func StartInstance(ctx context.Context, p *Plugin) error {
	inst, err := p.newInstance(ctx)
	if err != nil {
		return err
	}
	inst.close()
	return nil
}

// ABICall runs exports of one instance of a plugin inside an event call,
// as faro_handle runs, so that the host functions they call see the event:
// fuzz tests drive the host functions through a hand-made guest with the
// pointers and lengths it passes.
type ABICall struct{ inst *instance }

// ABIResult is what one ABICall.Call did.
type ABIResult struct {
	Results []uint64
	Records []json.RawMessage
	ErrMsg  string // the set_error message
	Failure error  // the output limit was hit
	Err     error  // from wazero: a trap
}

// StartABICall starts an instance of p.
func StartABICall(ctx context.Context, p *Plugin) (*ABICall, error) {
	inst, err := p.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	return &ABICall{inst: inst}, nil
}

// Memory is the instance's linear memory.
func (c *ABICall) Memory() api.Memory { return c.inst.memory }

// Call calls export with args inside a call for ev.
func (c *ABICall) Call(ctx context.Context, ev *Event, export string, args ...uint64) ABIResult {
	cs := &c.inst.cs
	cs.begin(ev)
	cs.ctx = ctx
	var r ABIResult
	r.Results, r.Err = c.inst.mod.ExportedFunction(export).Call(withCall(ctx, cs), args...)
	r.ErrMsg = cs.errMsg
	r.Records, r.Failure = cs.end()
	return r
}

// Close closes the instance.
func (c *ABICall) Close() { c.inst.close() }

// Globals reads exported globals of a new instance of p.
func Globals(ctx context.Context, p *Plugin, names ...string) ([]uint64, error) {
	inst, err := p.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	defer inst.close()
	var vals []uint64
	for _, n := range names {
		g := inst.mod.ExportedGlobal(n)
		if g == nil {
			return nil, fmt.Errorf("no global %q", n)
		}
		vals = append(vals, g.Get())
	}
	return vals, nil
}

// RuntimeStarted reports whether h has started its runtime.
func (h *Host) RuntimeStarted() bool {
	h.rtMu.Lock()
	defer h.rtMu.Unlock()
	return h.rt != nil
}
