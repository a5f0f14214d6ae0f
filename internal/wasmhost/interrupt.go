package wasmhost

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// The interrupt. Before compiling, Load adds two mutable i32 globals to
// the module, $stop (exported as interruptExport) and $fuel, and at the
// head of every loop (the only place where wasm code jumps backwards; a Go
// guest's every function is one) the check
//
//	global.get $fuel            ;; every yieldEvery iterations,
//	i32.eqz                     ;; leave the compiled code once,
//	if                          ;; so that the goroutine can be
//	  i32.const 0               ;; preempted (a garbage collection
//	  memory.grow 0             ;; waits for every goroutine) and
//	  drop                      ;; the timer that raises $stop runs
//	  i32.const yieldEvery
//	  global.set $fuel
//	end
//	global.get $fuel
//	i32.const 1
//	i32.sub
//	global.set $fuel
//	global.get $stop            ;; raised: trap
//	if
//	  unreachable
//	end
//
// A call is stopped by setting $stop: the guest traps at its next loop
// iteration. The check is a few loads, stores and branches, where wazero's
// close-on-context-done leaves the compiled code for Go at every loop
// header (RATIONALE.md has the figures). memory.grow 0 changes nothing (it
// returns the size) but is compiled as a call into Go, which is what makes
// the goroutine preemptible. Recursion without loops ends on the stack
// limit, and tail calls, the other way to run forever without a loop, are
// refused here (wazero does not enable them by default either).

// yieldEvery is how many loop iterations a guest runs between two exits
// to Go: an exit costs about as much as 25 iterations of an empty loop
// with the check, and 1000 iterations of a Go guest take tens of
// microseconds, a fair bound on how long a garbage collection waits.
const yieldEvery = 1000

// interruptExport names the added global among the module's exports.
const interruptExport = "faro.interrupt"

// Section ids, and the position each must have in a module: the new
// global section goes after those ranked before rankGlobal.
const (
	secCustom   = 0
	secImport   = 2
	secMemory   = 5
	secGlobal   = 6
	secExport   = 7
	secStart    = 8
	secCode     = 10
	rankGlobal  = 7
	importKindG = 3 // import descriptor of a global
)

var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// instrument returns the module bin with the interrupt global, its export
// and the loop checks added; everything else is copied as is. It refuses a
// module it cannot fully decode, one with a start function (a plugin is a
// reactor: _initialize runs under the interrupt, a start function would
// not) and one using tail calls.
func instrument(bin []byte) ([]byte, error) {
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly module")
	}
	out := make([]byte, 0, len(bin)+len(bin)/16)
	out = append(out, bin[:8]...)
	var (
		importedGlobals, definedGlobals uint32
		globalDone, exportDone          bool
		hasMemory                       bool
	)
	stopIndex := func() uint32 { return importedGlobals + definedGlobals }
	newGlobals := []byte{
		0x7f, 0x01, 0x41, 0x00, 0x0b, // $stop: mutable i32 = 0
		0x7f, 0x01, 0x41, 0x00, 0x0b, // $fuel: mutable i32 = 0
	}
	newExport := func() []byte {
		e := appendName(nil, interruptExport)
		return binary.AppendUvarint(append(e, 0x03), uint64(stopIndex()))
	}
	r := reader{b: bin, pos: 8}
	for r.pos < len(r.b) {
		id := r.byte()
		size := r.u32()
		body := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		if rank, ok := sectionRank[id]; ok && rank > rankGlobal && !globalDone {
			out = appendSection(out, secGlobal, appendVec(nil, 2, newGlobals))
			globalDone = true
		}
		switch id {
		case secImport:
			n, memories, err := countImports(body)
			if err != nil {
				return nil, fmt.Errorf("import section: %w", err)
			}
			importedGlobals, hasMemory = n, hasMemory || memories > 0
			out = appendSection(out, id, body)
		case secGlobal:
			br := reader{b: body}
			definedGlobals = br.u32()
			if br.err != nil {
				return nil, fmt.Errorf("global section: %w", br.err)
			}
			out = appendSection(out, id, appendVec(nil, definedGlobals+2, append(body[br.pos:len(body):len(body)], newGlobals...)))
			globalDone = true
		case secMemory:
			hasMemory = true
			out = appendSection(out, id, body)
		case secExport:
			br := reader{b: body}
			n := br.u32()
			start := br.pos
			for range n {
				if br.name() == interruptExport {
					return nil, fmt.Errorf("module already exports %q", interruptExport)
				}
				br.byte()
				br.u32()
			}
			if br.err != nil {
				return nil, fmt.Errorf("export section: %w", br.err)
			}
			entries := append(body[start:len(body):len(body)], newExport()...)
			out = appendSection(out, id, appendVec(nil, n+1, entries))
			exportDone = true
		case secStart:
			return nil, errors.New("module has a start function; a plugin is a reactor, initialised by _initialize")
		case secCode:
			if !exportDone {
				out = appendSection(out, secExport, appendVec(nil, 1, newExport()))
				exportDone = true
			}
			if !hasMemory {
				return nil, fmt.Errorf("module has no memory, so it does not export %q", abi.ExportMemory)
			}
			code, err := instrumentCode(body, stopIndex())
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			out = appendSection(out, id, code)
		case secCustom:
			if name := (&reader{b: body}).name(); len(name) > 7 && name[:7] == ".debug_" {
				continue // DWARF would point at the offsets before the checks were added
			}
			out = appendSection(out, id, body)
		default:
			out = appendSection(out, id, body)
		}
	}
	if !globalDone {
		out = appendSection(out, secGlobal, appendVec(nil, 2, newGlobals))
	}
	if !exportDone {
		out = appendSection(out, secExport, appendVec(nil, 1, newExport()))
	}
	return out, nil
}

// countImports counts the globals and memories an import section imports.
func countImports(body []byte) (globals, memories uint32, err error) {
	r := reader{b: body}
	for range r.u32() {
		r.name()
		r.name()
		switch kind := r.byte(); kind {
		case 0: // function: type index
			r.u32()
		case 1: // table: reference type, limits
			r.byte()
			r.limits()
		case 2: // memory: limits
			r.limits()
			memories++
		case importKindG: // global: value type, mutability
			r.byte()
			r.byte()
			globals++
		case 4: // tag: attribute, type index
			r.byte()
			r.u32()
		default:
			return 0, 0, fmt.Errorf("unknown import kind %d", kind)
		}
	}
	return globals, memories, r.err
}

// instrumentCode rewrites the code section: every function body with a
// check after each loop's block type.
func instrumentCode(body []byte, stop uint32) ([]byte, error) {
	fuel := uleb32(stop + 1)
	check := []byte{0x23}
	check = append(check, fuel...)
	check = append(check, 0x45, 0x04, 0x40, 0x41, 0x00, 0x40, 0x00, 0x1a, 0x41)
	check = appendSLEB(check, yieldEvery)
	check = append(append(check, 0x24), fuel...)
	check = append(append(check, 0x0b, 0x23), fuel...)
	check = append(append(check, 0x41, 0x01, 0x6b, 0x24), fuel...)
	check = append(append(check, 0x23), uleb32(stop)...)
	check = append(check, 0x04, 0x40, 0x00, 0x0b)
	r := reader{b: body}
	n := r.u32()
	out := make([]byte, 0, len(body)+len(body)/4) // checks add a few percent
	out = binary.AppendUvarint(out, uint64(n))
	var fn []byte
	for i := range n {
		size := r.u32()
		f := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("function %d: %w", i, r.err)
		}
		var err error
		if fn, err = instrumentFunc(fn[:0], f, check); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = binary.AppendUvarint(out, uint64(len(fn)))
		out = append(out, fn...)
	}
	if r.pos != len(body) {
		return nil, errors.New("trailing bytes")
	}
	return out, r.err
}

func instrumentFunc(out, f, check []byte) ([]byte, error) {
	r := reader{b: f}
	for range r.u32() { // locals: count, type
		r.u32()
		r.byte()
	}
	copied := 0
	for r.pos < len(f) && r.err == nil {
		op := r.byte()
		switch {
		case op == 0x03: // loop
			r.blockType()
			out = append(append(out, f[copied:r.pos]...), check...)
			copied = r.pos
		case op == 0x12 || op == 0x13:
			return nil, errors.New("tail calls (return_call) are not supported")
		default:
			r.immediates(op)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return append(out, f[copied:]...), nil
}

// reader decodes the parts of the binary format instrument needs; the
// first error sticks and every later read returns zero values.
type reader struct {
	b   []byte
	pos int
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.pos = len(r.b)
}

func (r *reader) byte() byte {
	if r.pos >= len(r.b) {
		r.fail(errTruncated)
		return 0
	}
	r.pos++
	return r.b[r.pos-1]
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || n > len(r.b)-r.pos {
		r.fail(errTruncated)
		return nil
	}
	r.pos += n
	return r.b[r.pos-n : r.pos]
}

// leb reads an LEB128 number of at most maxBytes bytes, signed or not
// (instrument only skips most of them).
func (r *reader) leb(maxBytes int) uint64 {
	var v uint64
	for i := range maxBytes {
		c := r.byte()
		if i < 10 {
			v |= uint64(c&0x7f) << (7 * i)
		}
		if c&0x80 == 0 {
			return v
		}
	}
	r.fail(errors.New("LEB128 number too long"))
	return 0
}

func (r *reader) u32() uint32 { return uint32(r.leb(5)) }

func (r *reader) name() string { return string(r.bytes(int(r.u32()))) }

func (r *reader) limits() {
	flags := r.byte()
	r.leb(10)
	if flags&1 != 0 {
		r.leb(10)
	}
}

func (r *reader) blockType() {
	if r.pos < len(r.b) && r.b[r.pos]&0xc0 == 0x40 { // empty, or one value type
		r.pos++
		return
	}
	r.leb(5) // a type index, as a signed 33-bit number
}

func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 { // multi-memory: a memory index follows
		r.u32()
	}
	r.leb(10)
}

// immediates skips the immediates of the instruction op.
func (r *reader) immediates(op byte) {
	switch {
	case op == 0x02 || op == 0x04: // block, if
		r.blockType()
	case op == 0x0c || op == 0x0d: // br, br_if
		r.u32()
	case op == 0x0e: // br_table
		for range r.u32() {
			r.u32()
		}
		r.u32()
	case op == 0x10 || op == 0xd2: // call, ref.func
		r.u32()
	case op == 0x11: // call_indirect
		r.u32()
		r.u32()
	case op == 0x1c: // select with types
		for range r.u32() {
			r.byte()
		}
	case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
		r.u32()
	case op >= 0x28 && op <= 0x3e: // loads and stores
		r.memarg()
	case op == 0x3f || op == 0x40: // memory.size, memory.grow
		r.u32()
	case op == 0x41:
		r.leb(5)
	case op == 0x42:
		r.leb(10)
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xd0: // ref.null
		r.byte()
	case op == 0xfc:
		r.miscImmediates(r.u32())
	case op == 0xfd:
		r.simdImmediates(r.u32())
	case op == 0xfe:
		if sub := r.u32(); sub == 0x03 { // atomic.fence
			r.byte()
		} else {
			r.memarg()
		}
	case op <= 0x01, op == 0x05, op == 0x0b, op == 0x0f, op == 0x1a, op == 0x1b, op == 0xd1,
		op >= 0x45 && op <= 0xc4: // no immediates
	default:
		r.fail(fmt.Errorf("unsupported instruction 0x%02x at offset %d", op, r.pos-1))
	}
}

func (r *reader) miscImmediates(sub uint32) {
	switch {
	case sub <= 7: // saturating truncations
	case sub == 8: // memory.init: data, memory
		r.u32()
		r.u32()
	case sub == 9 || sub == 11 || sub == 13 || sub >= 15 && sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		r.u32()
	case sub == 10 || sub == 12 || sub == 14: // memory.copy, table.init, table.copy
		r.u32()
		r.u32()
	default:
		r.fail(fmt.Errorf("unsupported instruction 0xfc %d", sub))
	}
}

func (r *reader) simdImmediates(sub uint32) {
	switch {
	case sub <= 0x0b || sub == 0x5c || sub == 0x5d: // loads, stores
		r.memarg()
	case sub == 0x0c || sub == 0x0d: // v128.const, i8x16.shuffle
		r.bytes(16)
	case sub >= 0x15 && sub <= 0x22: // extract and replace lane
		r.byte()
	case sub >= 0x54 && sub <= 0x5b: // load and store lane
		r.memarg()
		r.byte()
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func uleb32(n uint32) []byte { return binary.AppendUvarint(nil, uint64(n)) }

func appendName(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendVec appends a vector of n entries whose encodings are entries.
func appendVec(b []byte, n uint32, entries []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(n)), entries...)
}

func appendSection(b []byte, id byte, body []byte) []byte {
	b = binary.AppendUvarint(append(b, id), uint64(len(body)))
	return append(b, body...)
}
