package wasmhost_test

import "fmt"

// A tiny WebAssembly encoder for hand-made test modules: ABI violations the
// Go toolchain cannot produce, and a guest with no runtime at all, whose
// calls measure the host's own overhead.

// Value types and opcodes used below.
const (
	tI32 = 0x7f

	opUnreachable = 0x00
	opLoop        = 0x03
	opBr          = 0x0c
	opEnd         = 0x0b
	opCall        = 0x10
	opLocalGet    = 0x20
	opI32Const    = 0x41
)

type wasmFunc struct {
	export          string // "" for none
	params, results []byte
	body            []byte // instructions, without the final end
}

type wasmImport struct {
	module, name    string
	params, results []byte
}

type wasmModule struct {
	imports   []wasmImport
	funcs     []wasmFunc
	memPages  uint32 // minimum pages of an exported "memory"
	noMemory  bool
	memExport string  // export name of the memory, default "memory"
	globals   []int32 // mutable i32 globals, exported as g0, g1...
	start     bool    // a start section naming the first function
}

// abiModule is a minimal module satisfying ABI version 1, with handle's
// body replaced by handleBody (default: return StatusOK).
func abiModule(version int32, handleBody ...byte) wasmModule {
	if handleBody == nil {
		handleBody = i32Const(0)
	}
	return wasmModule{
		memPages: 1,
		funcs: []wasmFunc{
			{export: "_initialize"},
			{export: "faro_abi_version", results: []byte{tI32}, body: i32Const(version)},
			{export: "faro_handle", params: []byte{tI32}, results: []byte{tI32}, body: handleBody},
		},
	}
}

func i32Const(v int32) []byte { return append([]byte{opI32Const}, sleb(int64(v))...) }

// loopForever is `loop br 0 end` followed by a result the validator wants.
var loopForever = append([]byte{opLoop, 0x40, opBr, 0, opEnd}, i32Const(0)...)

func (m wasmModule) bytes() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	var types [][]byte
	typeOf := func(params, results []byte) uint32 {
		t := append(append(append([]byte{0x60}, uleb(uint32(len(params)))...), params...), uleb(uint32(len(results)))...)
		t = append(t, results...)
		for i, have := range types {
			if string(have) == string(t) {
				return uint32(i)
			}
		}
		types = append(types, t)
		return uint32(len(types) - 1)
	}
	var imports, funcs, exports, code [][]byte
	for _, im := range m.imports {
		imports = append(imports, concat(name(im.module), name(im.name), []byte{0}, uleb(typeOf(im.params, im.results))))
	}
	for i, f := range m.funcs {
		idx := uint32(len(m.imports) + i)
		funcs = append(funcs, uleb(typeOf(f.params, f.results)))
		if f.export != "" {
			exports = append(exports, concat(name(f.export), []byte{0}, uleb(idx)))
		}
		body := concat([]byte{0}, f.body, []byte{opEnd}) // no locals
		code = append(code, concat(uleb(uint32(len(body))), body))
	}
	var mems [][]byte
	if !m.noMemory {
		mems = append(mems, concat([]byte{0}, uleb(m.memPages)))
		exp := m.memExport
		if exp == "" {
			exp = "memory"
		}
		exports = append(exports, concat(name(exp), []byte{2}, uleb(0)))
	}
	out = append(out, section(1, types)...)
	if len(imports) > 0 {
		out = append(out, section(2, imports)...)
	}
	out = append(out, section(3, funcs)...)
	if len(mems) > 0 {
		out = append(out, section(5, mems)...)
	}
	var globals [][]byte
	for i, g := range m.globals {
		globals = append(globals, concat([]byte{tI32, 1}, i32Const(g), []byte{opEnd}))
		exports = append(exports, concat(name(fmt.Sprintf("g%d", i)), []byte{3}, uleb(uint32(i))))
	}
	if len(globals) > 0 {
		out = append(out, section(6, globals)...)
	}
	out = append(out, section(7, exports)...)
	if m.start {
		out = concat(out, []byte{8}, uleb(uint32(len(uleb(uint32(len(m.imports)))))), uleb(uint32(len(m.imports))))
	}
	return append(out, section(10, code)...)
}

func section(id byte, items [][]byte) []byte {
	content := concat(append([][]byte{uleb(uint32(len(items)))}, items...)...)
	return concat([]byte{id}, uleb(uint32(len(content))), content)
}

func name(s string) []byte { return concat(uleb(uint32(len(s))), []byte(s)) }

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func uleb(v uint32) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}
