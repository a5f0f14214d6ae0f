package wasmhost

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// instance is one instantiated module. It serves one call at a time (the
// pool token guarantees it), so its fields need no locking, but for the
// interrupt, which a timer raises.
type instance struct {
	p      *Plugin
	mod    api.Module
	handle api.Function
	memory api.Memory
	mem    *linearMemory
	stdout boundedBuffer
	stderr boundedBuffer
	cs     callState
	stack  [1]uint64
	calls  int
	// done is the running call's ctx.Done(), which lets a guest's sleep end
	// when the call is stopped.
	done <-chan struct{}
	// stale is set when a call's interrupt was raised, even if the call
	// returned in time: the instance would trap at its next loop.
	stale bool

	mu        sync.Mutex        // orders raising the interrupt and closing
	interrupt api.MutableGlobal // the global of interrupt.go; nil without the checks
	closed    bool
}

// initTimeout bounds _initialize, which for a Go guest starts its runtime.
const initTimeout = 10 * time.Second

// guestGOGC is the GOGC a guest finds in its environment, its only
// variable: a Go guest's heap then grows to a quarter over what is live
// (with a 1 MB floor) before it collects, instead of doubling (4 MB
// floor), which keeps each pooled instance's resident memory about 1.7 MB
// smaller for the changelog example; a guest may still call
// debug.SetGCPercent. Other guests ignore it.
const guestGOGC = "25"

// newInstance instantiates the module and runs _initialize.
func (p *Plugin) newInstance(ctx context.Context) (*instance, *Error) {
	inst := &instance{p: p, mem: &linearMemory{limit: p.spec.MemoryLimit}}
	inst.stdout.max, inst.stderr.max = maxCaptured, maxCaptured
	inst.cs.p = p
	cfg := wazero.NewModuleConfig().
		WithName("").         // anonymous: many instances of one module
		WithStartFunctions(). // _initialize runs below, under the interrupt
		WithStdout(&inst.stdout).
		WithStderr(&inst.stderr).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(inst.sleep).
		WithOsyield(runtime.Gosched).
		WithRandSource(rand.Reader).
		WithEnv("GOGC", guestGOGC)
	timeout := max(initTimeout, p.spec.Timeout)
	mod, err := p.rt.InstantiateModule(
		experimental.WithMemoryAllocator(withCall(ctx, &inst.cs), inst.mem), p.compiled, cfg)
	if err != nil {
		inst.flush()
		return nil, inst.classify(false, ctx, timeout, err)
	}
	inst.mod = mod
	inst.interrupt, _ = mod.ExportedGlobal(interruptExport).(api.MutableGlobal)
	stopped, err := inst.invoke(ctx, timeout, mod.ExportedFunction(abi.ExportInitialize))
	inst.flush()
	if err != nil || stopped {
		inst.close()
		return nil, inst.classify(stopped, ctx, timeout, err)
	}
	p.instances.Add(1)
	inst.handle = mod.ExportedFunction(abi.ExportHandle)
	inst.memory = mod.Memory()
	return inst, nil
}

// invoke calls fn, with inst.stack as its parameters and results, for at
// most timeout, and sooner stops it when ctx ends. stopped reports that the
// interrupt was raised: the call trapped, or is about to trap, on it.
func (inst *instance) invoke(ctx context.Context, timeout time.Duration, fn api.Function) (stopped bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raise := context.AfterFunc(cctx, inst.raise)
	inst.done, inst.cs.ctx = cctx.Done(), cctx
	inst.mem.enter()
	err = fn.CallWithStack(withCall(cctx, &inst.cs), inst.stack[:])
	inst.mem.leave()
	inst.done, inst.cs.ctx = nil, nil
	if !raise() {
		inst.stale = true
		return true, err
	}
	return false, err
}

// raise sets the interrupt: the running call traps at its next loop.
func (inst *instance) raise() {
	inst.mu.Lock()
	defer inst.mu.Unlock()
	if inst.interrupt != nil && !inst.closed {
		inst.interrupt.Set(1)
	}
}

// close releases the instance; wazero frees its memory through mem.Free.
func (inst *instance) close() {
	inst.mu.Lock()
	inst.closed = true
	inst.mu.Unlock()
	_ = inst.mod.Close(context.Background())
}

// sleep implements the guest's nanosleep (time.Sleep, an idle Go
// scheduler) with real time, cut short when the call is stopped.
func (inst *instance) sleep(ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-inst.done:
	}
}

// call runs the guest's handler for ev.
func (inst *instance) call(ctx context.Context, ev *Event) (Result, *Error) {
	p := inst.p
	cs := &inst.cs
	cs.begin(ev)
	inst.stack[0] = uint64(len(cs.input))
	stopped, err := inst.invoke(ctx, p.spec.Timeout, inst.handle)
	inst.flush()
	records, failure := cs.end()
	switch {
	case err != nil:
		return Result{}, inst.classify(stopped, ctx, p.spec.Timeout, err)
	case failure != nil:
		return Result{}, &Error{Plugin: p.spec.Name, Kind: KindOutput, Err: failure}
	}
	switch status := int32(inst.stack[0]); status {
	case abi.StatusOK:
		return Result{Records: records}, nil
	case abi.StatusError, abi.StatusPanic:
		msg, kind := cs.errMsg, KindError
		if status == abi.StatusPanic {
			kind = KindPanic
		}
		if msg == "" {
			msg = "handler failed without a message"
		}
		return Result{}, &Error{Plugin: p.spec.Name, Kind: kind, Err: errors.New(msg)}
	default:
		return Result{}, &Error{Plugin: p.spec.Name, Kind: KindOutput, Err: fmt.Errorf("handler returned unknown status %d", status)}
	}
}

// classify turns an error from wazero into an *Error: the memory allocator
// knows whether a grow was refused, stopped whether the interrupt was
// raised, and stderr usually says why a guest crashed.
func (inst *instance) classify(stopped bool, parent context.Context, timeout time.Duration, err error) *Error {
	p := inst.p
	e := &Error{Plugin: p.spec.Name, Kind: KindTrap, Err: err}
	var exit *sys.ExitError
	isExit := errors.As(err, &exit)
	switch {
	case parent.Err() != nil:
		e.Kind, e.Err = KindCanceled, parent.Err()
	case stopped:
		e.Kind, e.Err = KindTimeout, fmt.Errorf("stopped after %s", timeout)
	case inst.mem.refused:
		e.Kind, e.Err = KindOOM, fmt.Errorf("memory_limit of %s reached%s", Quantity(p.spec.MemoryLimit), inst.stderr.summary())
	case isExit:
		e.Err = fmt.Errorf("exited with code %d%s", exit.ExitCode(), inst.stderr.summary())
	default:
		e.Err = trapError{err, inst.stderr.summary()}
	}
	return e
}

// trapError shows the first line of a wazero trap (its wasm stack trace
// follows on the next lines; the guest's own trace is in the logged
// stderr) and keeps the whole error for errors.Is/As.
type trapError struct {
	err    error
	stderr string
}

func (t trapError) Error() string {
	msg, _, _ := strings.Cut(t.err.Error(), "\n")
	return msg + t.stderr
}

func (t trapError) Unwrap() error { return t.err }

// flush logs what the guest wrote to stdout and stderr during the call.
func (inst *instance) flush() {
	if s := inst.stdout.take(); s != "" {
		inst.p.log.Info("plugin stdout", "output", s)
	}
	if s := inst.stderr.take(); s != "" {
		inst.p.log.Warn("plugin stderr", "output", s)
	}
}

// maxCaptured bounds what is kept of a guest's stdout and of its stderr per
// call; a Go panic's message and first frames fit comfortably.
const maxCaptured = 8 << 10

// boundedBuffer keeps the first max bytes written to it and counts the rest.
type boundedBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped int
	last    string // what take returned, for summary
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := max(b.max-b.buf.Len(), 0)
	b.buf.Write(p[:min(room, len(p))])
	b.dropped += len(p) - min(room, len(p))
	return len(p), nil
}

// take returns and clears the captured text.
func (b *boundedBuffer) take() string {
	if b.buf.Len() == 0 && b.dropped == 0 {
		b.last = ""
		return ""
	}
	s := strings.TrimRight(b.buf.String(), "\n")
	if b.dropped > 0 {
		s += fmt.Sprintf("\n... (%d more bytes dropped)", b.dropped)
	}
	b.buf.Reset()
	b.dropped = 0
	b.last = s
	return s
}

// summary is the telling line of the last captured output (a Go panic or
// fatal error), for error messages.
func (b *boundedBuffer) summary() string {
	lines := strings.Split(b.last, "\n")
	line := lines[0]
	for _, l := range lines {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			line = l
			break
		}
	}
	if line = strings.TrimSpace(line); line == "" {
		return ""
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	return ": " + line
}
