package wasmhost_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/faro-dev/faro/internal/wasmhost"
	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// abiFuncs are the faro host functions in the order of FuzzHostABI's fn,
// with their number of i32 parameters and results. The fns past them call
// one of them in another setting: see abiFunc.
var abiFuncs = []struct {
	name            string
	params, results int
}{
	{abi.ImportReadInput, 1, 0},
	{abi.ImportGetField, 4, 1},
	{abi.ImportGetConfig, 2, 1},
	{abi.ImportEmit, 2, 1},
	{abi.ImportSetError, 2, 0},
	{abi.ImportLog, 3, 0},
	{abi.ImportHTTPPost, 7, 1},
	{abi.ImportGetChanges, 4, 1},
}

// The fns past abiFuncs. changesUpdate is get_changes on an update, whose
// old object differs from the object in many ways (fn 7 is get_changes on
// fuzzEvent, which has no old object). httpServer is http_post with the URL
// of a test server the plugin may reach, so that the response's buffers
// are exercised too.
const (
	changesUpdate = 8
	httpServer    = 9
)

// abiFunc is the abiFuncs index of the function fn calls.
func abiFunc(fn uint8) int {
	switch fn {
	case changesUpdate:
		return 7
	case httpServer:
		return 6
	}
	return int(fn)
}

// abiFuzzModule is a guest that exports fuzz_NAME for every faro function
// NAME, passing its parameters through: the fuzzer calls the real host
// functions from wasm with any pointers and lengths.
func abiFuzzModule() []byte {
	m := abiModule(1)
	for i, f := range abiFuncs {
		im := wasmImport{module: abi.HostModule, name: f.name, params: bytes.Repeat([]byte{tI32}, f.params), results: bytes.Repeat([]byte{tI32}, f.results)}
		m.imports = append(m.imports, im)
		var body []byte
		for p := range f.params {
			body = append(body, opLocalGet, byte(p))
		}
		body = append(append(body, opCall), uleb(uint32(i))...)
		m.funcs = append(m.funcs, wasmFunc{export: "fuzz_" + f.name, params: im.params, results: im.results, body: body})
	}
	return m.bytes()
}

// fuzzEvent is the event of every call: pointers into it are fuzzed.
var fuzzEvent = &wasmhost.Event{
	Header: abi.Header{Type: "UPDATED", GVR: "apps/v1/deployments", Namespace: "prod", Name: "web", UID: "u-1", ResourceVersion: "42", Rule: `namespaces[0].resources["apps/v1/deployments"]`},
	Object: map[string]any{
		"metadata": map[string]any{
			"name": "web", "labels": map[string]any{"app.kubernetes.io/name": "web", "a~b": "tilde", "": "empty key"},
		},
		"spec": map[string]any{
			"replicas": int64(3), "ratio": 0.5, "paused": false, "selector": nil,
			"containers": []any{map[string]any{"image": "nginx:1.27", "ports": []any{int64(80), int64(443)}}, "ünïcode <&>"},
		},
	},
}

// fuzzUpdate is fuzzEvent as an update: its old object has a changed,
// a removed and an added label, a number equal by value (3.0), a
// changed number, null against false, a map against nil, a shorter list
// of other containers and a field the object no longer has.
var fuzzUpdate = &wasmhost.Event{
	Header: fuzzEvent.Header,
	Object: fuzzEvent.Object,
	OldObject: map[string]any{
		"metadata": map[string]any{
			"name": "web", "labels": map[string]any{"app.kubernetes.io/name": "web", "a~b": "old", "gone/x": "x"},
		},
		"spec": map[string]any{
			"replicas": 3.0, "ratio": 0.25, "paused": nil, "selector": map[string]any{"app": "web"},
			"containers": []any{map[string]any{"image": "nginx:1.26", "ports": []any{int64(80)}}},
		},
		"status": map[string]any{"ready": true},
	},
}

const fuzzConfig = `{"webhook":"https://example.com/hook","n":1}`

// FuzzHostABI calls one faro host function (fn) through a real guest with
// fuzzed arguments, data written into guest memory at offset at. A model of
// the ABI (plugins/sdk/ABI.md) says for each call which guest memory ranges
// the host reads and writes: the call traps exactly when one is outside the
// memory, the host never writes outside the ranges it answers in, and what
// it writes, returns, emits or keeps is what the ABI says, get_field's JSON
// pointers resolved by a reference RFC 6901 resolver on the event document
// and get_changes' answers computed by a reference diff of the objects.
func FuzzHostABI(f *testing.F) {
	const page = 1 << 16
	ptr := []byte(`/object/metadata/labels/app.kubernetes.io~1name`)
	for _, seed := range []struct {
		fn   uint8
		data []byte
		at   uint16
		args [7]uint32
	}{
		{0, nil, 0, [7]uint32{100}},
		{0, nil, 0, [7]uint32{page - 10}},
		{1, ptr, 10, [7]uint32{10, uint32(len(ptr)), 200, 100}},
		{1, ptr, 10, [7]uint32{10, uint32(len(ptr)), 200, 1}},
		{1, ptr, 10, [7]uint32{10, uint32(len(ptr)), page - 2, 100}},
		{1, []byte("/object/spec/containers/0/ports/01"), 0, [7]uint32{0, 34, 100, 100}},
		{1, []byte("/object/metadata/labels/a~0b"), 0, [7]uint32{0, 28, 100, 100}},
		{1, []byte("/object/metadata/labels/"), 0, [7]uint32{0, 24, 100, 100}},
		{1, []byte("/old_object"), 0, [7]uint32{0, 11, 100, 100}},
		{1, nil, 0, [7]uint32{0, 0, 100, 5000}},
		{1, nil, 0, [7]uint32{0xffffffff, 2, 100, 100}},
		{1, nil, 0, [7]uint32{0, 5000, 100, 100}},
		{2, nil, 0, [7]uint32{page - 10, 5}},
		{2, nil, 0, [7]uint32{page - uint32(len(fuzzConfig)), 1000}},
		{3, []byte(` {"a":[1,2]} `), 50, [7]uint32{50, 13}},
		{3, []byte(`[1]`), 50, [7]uint32{50, 3}},
		{3, []byte(`{"a":`), 50, [7]uint32{50, 5}},
		{3, nil, 0, [7]uint32{page, 1}},
		{4, []byte("boom"), 0, [7]uint32{0, 4}},
		{4, nil, 0, [7]uint32{0, page}},
		{4, nil, 0, [7]uint32{1, page}},
		{5, []byte("hello"), 0, [7]uint32{0xfffffffc, 0, 5}},
		{5, nil, 0, [7]uint32{8, page - 4, 8}},
		{6, []byte(`https://example.com/x{}`), 0, [7]uint32{0, 21, 21, 2, 100, 100, 200}},
		{6, []byte(`ftp://x`), 0, [7]uint32{0, 7, 0, 0, 0, 0, 0}},
		{httpServer, []byte(`{"hello":"world"}`), 0, [7]uint32{0, 0, 0, 17, 100, 100, 300}},
		{httpServer, []byte(`{"hello":"world"}`), 0, [7]uint32{0, 0, 0, 17, 100, 4, page - 4}},
		{httpServer, []byte(`{"hello":"world"}`), 0, [7]uint32{0, 0, 0, 17, page - 3, 100, 0}},
		{httpServer, []byte(`{"hello":"world"}`), 0, [7]uint32{0, 0, 0, 17, 100, 100, page - 3}},
		{7, nil, 0, [7]uint32{0, 0, 100, 5000}},
		{7, []byte("/spec/containers/1"), 0, [7]uint32{0, 18, 100, 100}},
		{7, nil, 0, [7]uint32{0xffffffff, 2, 100, 100}},
		{7, nil, 0, [7]uint32{0, 5000, 100, 100}},
		{changesUpdate, nil, 0, [7]uint32{0, 0, 100, 5000}},
		{changesUpdate, nil, 0, [7]uint32{0, 0, 100, 10}},
		{changesUpdate, nil, 0, [7]uint32{0, 0, page - 100, 5000}},
		{changesUpdate, []byte("/spec"), 0, [7]uint32{0, 5, 100, 1000}},
		{changesUpdate, []byte("/spec/replicas"), 0, [7]uint32{0, 14, page - 4, 100}},
		{changesUpdate, []byte("/spec/replicas"), 0, [7]uint32{0, 14, page - 3, 100}},
		{changesUpdate, []byte("/metadata/labels/a~0b"), 0, [7]uint32{0, 21, 100, 100}},
		{changesUpdate, []byte("/spec/containers/01"), 0, [7]uint32{0, 19, 100, 100}},
		{changesUpdate, []byte("/status/ready"), 0, [7]uint32{0, 13, 100, 100}},
		{changesUpdate, []byte("spec"), 0, [7]uint32{0, 4, 100, 100}},
		{changesUpdate, nil, 0, [7]uint32{page - 1, 2, 100, 100}},
	} {
		a := seed.args
		f.Add(seed.fn, seed.data, seed.at, a[0], a[1], a[2], a[3], a[4], a[5], a[6])
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // before writing: HTTP/1 may cut the body short after
		_, _ = w.Write(b)          // echo
	}))
	f.Cleanup(srv.Close)
	p := load(f, wasmhost.PluginSpec{
		Path:         writeModule(f, abiFuzzModule()),
		Config:       json.RawMessage(fuzzConfig),
		AllowedHosts: []string{strings.TrimPrefix(srv.URL, "http://")},
	})
	ctx := context.Background()
	var call *wasmhost.ABICall
	f.Cleanup(func() {
		if call != nil {
			call.Close()
		}
	})
	doc := eventDocument(f, fuzzEvent)
	updateDoc := eventDocument(f, fuzzUpdate)
	header := eventHeader(fuzzEvent)

	f.Fuzz(func(t *testing.T, fn uint8, data []byte, at uint16, a0, a1, a2, a3, a4, a5, a6 uint32) {
		if call == nil {
			var err error
			if call, err = wasmhost.StartABICall(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		mem := call.Memory()
		size := uint64(mem.Size())
		args := []uint32{a0, a1, a2, a3, a4, a5, a6}
		fn %= httpServer + 1
		ev, evDoc := fuzzEvent, doc
		if fn == changesUpdate {
			ev, evDoc = fuzzUpdate, updateDoc
		}
		if fn == httpServer {
			// The server's URL at the top of memory, the data after it.
			u := []byte(srv.URL)
			data = append(u, data...)
			at = 0
			args[0], args[1] = 0, uint32(len(u))
			args[2] += uint32(len(u))
		}
		// Fresh memory: a pattern, the data at at.
		before := make([]byte, size)
		for i := range before {
			before[i] = byte(i * 7)
		}
		copy(before[min(uint64(at), size):], data)
		if !mem.Write(0, before) {
			t.Fatal("cannot write guest memory")
		}

		f := abiFuncs[abiFunc(fn)]
		stack := make([]uint64, f.params)
		for i := range stack {
			stack[i] = uint64(args[i])
		}
		want := model(fn, args, before, size, evDoc, header)
		got := call.Call(ctx, ev, "fuzz_"+f.name, stack...)

		after, ok := mem.Read(0, uint32(size))
		if !ok {
			t.Fatal("cannot read guest memory")
		}
		after = slices.Clone(after) // the memory is unmapped when the instance closes
		if want.trap {
			if got.Err == nil || !strings.Contains(got.Err.Error(), "outside guest memory") {
				t.Fatalf("%s%v: want a trap for a range outside memory, got %+v", f.name, args[:f.params], got)
			}
			// A trap costs the instance, as in Plugin.Handle.
			call.Close()
			call = nil
		} else if got.Err != nil {
			t.Fatalf("%s%v: %v", f.name, args[:f.params], got.Err)
		}
		// Nothing written outside the answer's ranges; in them, the answer
		// (when the call did not trap).
		for i := range after {
			if after[i] != before[i] && !want.writable(uint64(i)) {
				t.Fatalf("%s%v: byte %d changed outside the ranges the host answers in", f.name, args[:f.params], i)
			}
		}
		if want.trap {
			return
		}
		// The writes in order (http_post's may overlap); a JSON answer
		// compares as JSON, keys perhaps in another order.
		expected := bytes.Clone(before)
		for _, w := range want.writes {
			copy(expected[w.at:], w.b)
		}
		for _, w := range want.writes {
			if b := after[w.at : w.at+uint64(len(w.b))]; w.json && reflect.DeepEqual(decodeJSON(t, b), decodeJSON(t, w.b)) {
				copy(expected[w.at:], b)
			}
		}
		if i := firstDiff(after, expected); i >= 0 {
			t.Fatalf("%s%v: byte %d is %#x, want %#x (writes %+v)", f.name, args[:f.params], i, after[i], expected[i], want.writes)
		}
		if f.results > 0 && int32(got.Results[0]) != want.result {
			t.Fatalf("%s%v = %d, want %d", f.name, args[:f.params], int32(got.Results[0]), want.result)
		}
		if len(got.Records) != len(want.records) || (len(want.records) > 0 && !bytes.Equal(got.Records[0], want.records[0])) {
			t.Fatalf("%s%v: records %q, want %q", f.name, args[:f.params], got.Records, want.records)
		}
		if got.ErrMsg != want.errMsg || got.Failure != nil {
			t.Fatalf("%s%v: set_error message %q (failure %v), want %q", f.name, args[:f.params], got.ErrMsg, got.Failure, want.errMsg)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// abiOutcome is what the ABI says a call does.
type abiOutcome struct {
	trap    bool
	result  int32
	writes  []span // what the host writes where (when it does not trap)
	allowed []span // where it may write: writes, and before a trap the writes it did
	records [][]byte
	errMsg  string
}

type span struct {
	at   uint64
	b    []byte
	json bool // b is JSON: compare it as such
}

func (o abiOutcome) writable(i uint64) bool {
	for _, s := range o.allowed {
		if i >= s.at && i < s.at+uint64(len(s.b)) {
			return true
		}
	}
	return false
}

// model is the ABI of plugins/sdk/ABI.md, written independently of the host.
func model(fn uint8, args []uint32, mem []byte, size uint64, doc any, header []byte) abiOutcome {
	var o abiOutcome
	in := func(p, n uint32) bool { return uint64(p)+uint64(n) <= size }
	read := func(p, n uint32) ([]byte, bool) {
		if !in(p, n) {
			o.trap = true
			return nil, false
		}
		return mem[p : uint64(p)+uint64(n)], true
	}
	write := func(p uint32, b []byte, isJSON bool) bool {
		o.allowed = append(o.allowed, span{uint64(p), b, isJSON})
		if !in(p, uint32(len(b))) {
			o.trap = true
			return false
		}
		o.writes = append(o.writes, span{uint64(p), b, isJSON})
		return true
	}
	answer := func(p, bufCap uint32, val []byte, isJSON bool) {
		if val == nil {
			o.result = abi.ErrNotFound
			return
		}
		o.result = int32(len(val))
		if uint64(len(val)) <= uint64(bufCap) {
			write(p, val, isJSON)
		}
	}
	switch fn {
	case 0:
		write(args[0], header, false)
	case 1:
		if p, ok := read(args[0], args[1]); ok {
			if len(p) > 4<<10 {
				o.result = abi.ErrNotFound
				break
			}
			answer(args[2], args[3], resolvePointer(doc, string(p)), true)
		}
	case 7, changesUpdate:
		if p, ok := read(args[0], args[1]); ok {
			if len(p) > 4<<10 {
				o.result = abi.ErrNotFound
				break
			}
			answer(args[2], args[3], changesLayout(diffAt(doc, string(p))), false)
		}
	case 2:
		answer(args[0], args[1], []byte(fuzzConfig), true)
	case 3:
		if rec, ok := read(args[0], args[1]); ok {
			var obj map[string]any
			if json.Unmarshal(rec, &obj) != nil || obj == nil {
				o.result = abi.ErrInvalid
				break
			}
			o.records = [][]byte{rec}
		}
	case 4:
		if msg, ok := read(args[0], args[1]); ok {
			// At most 4 KiB, cut back to the start of a rune.
			n := min(len(msg), 4<<10)
			for n < len(msg) && n > 0 && msg[n]&0xC0 == 0x80 {
				n--
			}
			o.errMsg = string(msg[:n])
		}
	case 5:
		read(args[1], args[2])
	case 6, httpServer:
		url, ok1 := read(args[0], args[1])
		body, ok2 := read(args[2], args[3])
		switch {
		case !ok1 || !ok2:
		case len(url) > 8<<10:
			o.result = abi.ErrInvalid
		case fn == 6:
			// No URL the fuzzer writes names the test server.
			o.result = abi.ErrDenied
			if u, err := neturl.Parse(string(url)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				o.result = abi.ErrInvalid
			}
		default:
			o.result = http.StatusOK
			resp := body[:min(len(body), abi.MaxHTTPResponse)]
			if write(args[4], resp[:min(uint64(len(resp)), uint64(args[5]))], false) {
				write(args[6], binary.LittleEndian.AppendUint32(nil, uint32(len(resp))), false)
			}
		}
	}
	if o.trap {
		o.writes = nil
	}
	return o
}

// eventHeader is read_input's header, from the ABI's table.
func eventHeader(ev *wasmhost.Event) []byte {
	strs := []string{ev.Type, ev.GVR, ev.Namespace, ev.Name, ev.UID, ev.ResourceVersion, ev.Rule}
	var b []byte
	for _, s := range strs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	}
	if ev.Initial {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return append(b, strings.Join(strs, "")...)
}

// eventDocument is the event document get_field pointers address, decoded.
func eventDocument(tb testing.TB, ev *wasmhost.Event) any {
	b, err := json.Marshal(map[string]any{
		"type": ev.Type, "gvr": ev.GVR, "namespace": ev.Namespace, "name": ev.Name, "uid": ev.UID,
		"resource_version": ev.ResourceVersion, "initial": ev.Initial, "rule": ev.Rule,
		"object": ev.Object, "old_object": ev.OldObject,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return decodeJSON(tb, b)
}

func decodeJSON(tb testing.TB, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		tb.Fatalf("%q: %v", b, err)
	}
	return v
}

// resolvePointer resolves an RFC 6901 pointer in doc and returns the JSON
// of the value, nil when there is none. A pointer into a missing
// old_object finds nothing, even old_object itself.
func resolvePointer(doc any, pointer string) []byte {
	if pointer == "/old_object" || strings.HasPrefix(pointer, "/old_object/") {
		if doc.(map[string]any)["old_object"] == nil {
			return nil
		}
	}
	v, ok := lookupPointer(doc, pointer)
	if !ok {
		return nil
	}
	return marshalJSON(v)
}

// lookupPointer resolves an RFC 6901 pointer in a decoded document.
func lookupPointer(cur any, pointer string) (any, bool) {
	if pointer == "" {
		return cur, true
	}
	if pointer[0] != '/' {
		return nil, false
	}
	for _, tok := range strings.Split(pointer[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			n, err := strconv.ParseUint(tok, 10, 31)
			if err != nil || strconv.FormatUint(n, 10) != tok || n >= uint64(len(c)) {
				return nil, false
			}
			cur = c[n]
		default:
			return nil, false
		}
	}
	return cur, true
}

func marshalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("re-encoding a decoded document: %v", err))
	}
	return b
}

// change is one get_changes change: its path (string keys, int indexes)
// and the old and new JSON, nil where absent.
type change struct {
	path     []any
	old, new []byte
}

// diffAt is get_changes at pointer, relative to the objects of the event
// document doc, as the ABI describes it: a missing old object has no
// value anywhere, not even at the empty pointer.
func diffAt(doc any, pointer string) []change {
	d := doc.(map[string]any)
	var old, cur any
	var hasOld, hasNew bool
	if d["old_object"] != nil {
		old, hasOld = lookupPointer(d["old_object"], pointer)
	}
	if d["object"] != nil {
		cur, hasNew = lookupPointer(d["object"], pointer)
	}
	var out []change
	if hasOld || hasNew {
		diffValues(&out, nil, old, cur, hasOld, hasNew)
	}
	return out
}

func diffValues(out *[]change, path []any, old, cur any, hasOld, hasNew bool) {
	if hasOld && hasNew {
		om, oMap := old.(map[string]any)
		nm, nMap := cur.(map[string]any)
		ol, oList := old.([]any)
		nl, nList := cur.([]any)
		switch {
		case oMap && nMap:
			keys := map[string]bool{}
			for k := range om {
				keys[k] = true
			}
			for k := range nm {
				keys[k] = true
			}
			sorted := make([]string, 0, len(keys))
			for k := range keys {
				sorted = append(sorted, k)
			}
			sort.Strings(sorted)
			for _, k := range sorted {
				ov, ok1 := om[k]
				nv, ok2 := nm[k]
				diffValues(out, append(slices.Clip(path), k), ov, nv, ok1, ok2)
			}
			return
		case oList && nList:
			for i := 0; i < len(ol) || i < len(nl); i++ {
				var ov, nv any
				if i < len(ol) {
					ov = ol[i]
				}
				if i < len(nl) {
					nv = nl[i]
				}
				diffValues(out, append(slices.Clip(path), i), ov, nv, i < len(ol), i < len(nl))
			}
			return
		case !oMap && !nMap && !oList && !nList && sameScalar(old, cur):
			return
		}
	}
	c := change{path: slices.Clone(path)}
	if hasOld {
		c.old = marshalJSON(old)
	}
	if hasNew {
		c.new = marshalJSON(cur)
	}
	*out = append(*out, c)
}

// sameScalar compares decoded scalars, numbers (json.Number) exactly by
// value.
func sameScalar(a, b any) bool {
	na, ok1 := a.(json.Number)
	nb, ok2 := b.(json.Number)
	if ok1 && ok2 {
		ra, _ := new(big.Rat).SetString(string(na))
		rb, _ := new(big.Rat).SetString(string(nb))
		return ra.Cmp(rb) == 0
	}
	return a == b
}

// changesLayout is the changes layout of plugins/sdk/ABI.md.
func changesLayout(cs []change) []byte {
	u32 := func(b []byte, n int) []byte { return binary.LittleEndian.AppendUint32(b, uint32(n)) }
	side := func(v []byte) int {
		if v == nil {
			return 0xffffffff
		}
		return len(v)
	}
	b := u32(nil, len(cs))
	for _, c := range cs {
		b = u32(u32(u32(b, len(c.path)), side(c.old)), side(c.new))
		for _, e := range c.path {
			switch e := e.(type) {
			case int:
				b = u32(b, 1<<31|e)
			case string:
				b = append(u32(b, len(e)), e...)
			}
		}
		b = append(append(b, c.old...), c.new...)
	}
	return b
}
