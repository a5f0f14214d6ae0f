package abi

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"slices"
)

// Change is one difference between two versions of a JSON value, as
// get_changes delivers them: where (Path, from the value compared) and the
// old and new JSON there, nil where the path is absent on that side.
type Change struct {
	Path     []PathElem
	Old, New []byte
}

// PathElem is one step of a Change's path: a map key, or a list index
// when Index is not -1.
type PathElem struct {
	Key   string
	Index int
}

// ChangesAt returns the changes from the value pointer (RFC 6901) names in
// oldDoc to the one it names in newDoc, two documents decoded by
// encoding/json or Kubernetes' unstructured package: maps key by key
// (sorted), lists index by index, anything else (and a map or list whose
// kind changed) as a whole. A value on one side only is one change with an
// empty path; none on either side, no change. A nil map document (the old
// object of an event that has none) has no value, even at the empty
// pointer. Numbers compare by value (1 equals 1.0); a JSON null and an
// absent value differ.
func ChangesAt(oldDoc, newDoc any, pointer string) []Change {
	old, hasOld := lookupDoc(oldDoc, pointer)
	cur, hasNew := lookupDoc(newDoc, pointer)
	var d differ
	if hasOld || hasNew {
		d.values(old, cur, hasOld, hasNew)
	}
	return d.out
}

// lookupDoc is Lookup in a document, finding nothing in a nil map.
func lookupDoc(doc any, pointer string) (any, bool) {
	if m, ok := doc.(map[string]any); ok && m == nil {
		return nil, false
	}
	return Lookup(doc, pointer)
}

type differ struct {
	path []PathElem
	out  []Change
}

func (d *differ) values(old, new any, hasOld, hasNew bool) {
	if hasOld && hasNew {
		switch o := old.(type) {
		case map[string]any:
			if n, ok := new.(map[string]any); ok {
				d.maps(o, n)
				return
			}
		case []any:
			if n, ok := new.([]any); ok {
				d.lists(o, n)
				return
			}
		default:
			if ScalarEqual(old, new) {
				return
			}
		}
	}
	c := Change{Path: slices.Clone(d.path)}
	if hasOld {
		c.Old = marshal(old)
	}
	if hasNew {
		c.New = marshal(new)
	}
	d.out = append(d.out, c)
}

func (d *differ) maps(o, n map[string]any) {
	keys := make([]string, 0, len(o)+len(n))
	for k := range o {
		keys = append(keys, k)
	}
	for k := range n {
		if _, ok := o[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		ov, hasOld := o[k]
		nv, hasNew := n[k]
		d.path = append(d.path, PathElem{Key: k, Index: -1})
		d.values(ov, nv, hasOld, hasNew)
		d.path = d.path[:len(d.path)-1]
	}
}

func (d *differ) lists(o, n []any) {
	for i := range max(len(o), len(n)) {
		var ov, nv any
		if i < len(o) {
			ov = o[i]
		}
		if i < len(n) {
			nv = n[i]
		}
		d.path = append(d.path, PathElem{Index: i})
		d.values(ov, nv, i < len(o), i < len(n))
		d.path = d.path[:len(d.path)-1]
	}
}

// ScalarEqual reports whether two decoded JSON values, not both maps and
// not both lists, are equal: numbers by value (two int64s exactly; 1
// equals 1.0), other scalars by ==; a map or a list equals nothing here.
func ScalarEqual(a, b any) bool {
	if ia, ok := a.(int64); ok {
		if ib, ok := b.(int64); ok {
			return ia == ib
		}
	}
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return false
	}
	defer func() { _ = recover() }() // uncomparable dynamic types
	return a == b
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null") // a value that did not come from JSON
	}
	return b
}

// absent is the length written for a side of a change that has no value.
const absent = math.MaxUint32

// AppendChanges appends cs in the get_changes layout, all numbers
// little-endian u32: the number of changes, then per change the number of
// path elements, the old and the new value's lengths (0xffffffff: absent),
// each element as a u32 (a list index with the top bit set, else a key's
// length followed by the key), then the old and the new JSON. Like the
// event header, it costs a guest no parsing loop over the values.
func AppendChanges(b []byte, cs []Change) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(cs)))
	for _, c := range cs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Path)))
		b = binary.LittleEndian.AppendUint32(b, sideLen(c.Old))
		b = binary.LittleEndian.AppendUint32(b, sideLen(c.New))
		for _, e := range c.Path {
			if e.Index >= 0 {
				b = binary.LittleEndian.AppendUint32(b, 1<<31|uint32(e.Index))
				continue
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Key)))
			b = append(b, e.Key...)
		}
		b = append(append(b, c.Old...), c.New...)
	}
	return b
}

func sideLen(v []byte) uint32 {
	if v == nil {
		return absent
	}
	return uint32(len(v))
}

var errChanges = errors.New("abi: malformed changes")

// ParseChanges decodes what AppendChanges wrote. The values are slices of
// b; the keys share one string allocation.
func ParseChanges(b []byte) ([]Change, error) {
	all := string(b)
	pos := 0
	u32 := func() (uint32, bool) {
		if len(b)-pos < 4 {
			return 0, false
		}
		pos += 4
		return binary.LittleEndian.Uint32(b[pos-4:]), true
	}
	side := func(n uint32) ([]byte, bool) {
		if n == absent {
			return nil, true
		}
		if uint64(len(b)-pos) < uint64(n) {
			return nil, false
		}
		pos += int(n)
		return b[pos-int(n) : pos : pos], true
	}
	count, ok := u32()
	if !ok || uint64(count)*12 > uint64(len(b)) {
		return nil, errChanges
	}
	cs := make([]Change, count)
	for i := range cs {
		nelem, ok1 := u32()
		oldLen, ok2 := u32()
		newLen, ok3 := u32()
		if !ok1 || !ok2 || !ok3 || uint64(nelem)*4 > uint64(len(b)-pos) {
			return nil, errChanges
		}
		path := make([]PathElem, nelem)
		for j := range path {
			n, ok := u32()
			switch {
			case !ok:
				return nil, errChanges
			case n&(1<<31) != 0:
				path[j] = PathElem{Index: int(n &^ (1 << 31))}
			case uint64(len(b)-pos) < uint64(n):
				return nil, errChanges
			default:
				path[j] = PathElem{Key: all[pos : pos+int(n)], Index: -1}
				pos += int(n)
			}
		}
		old, ok1 := side(oldLen)
		new, ok2 := side(newLen)
		if !ok1 || !ok2 {
			return nil, errChanges
		}
		cs[i] = Change{Path: path, Old: old, New: new}
	}
	if pos != len(b) {
		return nil, errChanges
	}
	return cs, nil
}
