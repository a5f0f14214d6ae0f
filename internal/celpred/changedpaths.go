package celpred

import (
	"slices"
	"strconv"

	"github.com/faro-dev/faro/plugins/sdk/abi"
)

// diffPaths returns the sorted paths of the fields that differ between
// two unstructured objects, as the changedPaths variable holds them.
//
// Map keys are joined with dots (spec.replicas, metadata.labels.team; a key
// that itself contains dots, such as app.kubernetes.io/name, is not
// escaped). List elements are compared by index and written in brackets
// (spec.template.spec.containers[0].image); elements present on one side
// only are reported whole (spec.template.spec.containers[1]), as are fields
// present on one side only, and values whose kind changed (map, list,
// scalar). A field set to null and an absent field differ. Whole and
// fractional numbers compare by value (1 equals 1.0).
// metadata.resourceVersion, metadata.managedFields and metadata.generation
// are ignored: they change on (nearly) every update and say nothing about
// what the user changed. Sorting is by byte order.
func diffPaths(oldObj, newObj map[string]any) []string {
	d := differ{buf: make([]byte, 0, 128)}
	d.maps(oldObj, newObj)
	slices.Sort(d.out)
	return d.out
}

// differ walks two objects with the current path in buf, so that only the
// paths that differ are turned into strings.
type differ struct {
	buf   []byte
	depth int
	// inMetadata: buf is "metadata" (depth 1), where the ignored keys are.
	inMetadata bool
	out        []string
}

func (d *differ) emit() { d.out = append(d.out, string(d.buf)) }

// key appends a map key to the path and returns the previous length.
func (d *differ) key(k string) int {
	n := len(d.buf)
	if n > 0 {
		d.buf = append(d.buf, '.')
	}
	d.buf = append(d.buf, k...)
	return n
}

func (d *differ) index(i int) int {
	n := len(d.buf)
	d.buf = append(d.buf, '[')
	d.buf = strconv.AppendInt(d.buf, int64(i), 10)
	d.buf = append(d.buf, ']')
	return n
}

func (d *differ) ignored(k string) bool {
	return d.inMetadata && (k == "resourceVersion" || k == "managedFields" || k == "generation")
}

func (d *differ) maps(a, b map[string]any) {
	common := 0 // keys of a also in b
	for k, av := range a {
		bv, ok := b[k]
		if ok {
			common++
		}
		if d.ignored(k) {
			continue
		}
		n := d.key(k)
		if ok {
			meta := d.inMetadata
			d.depth++
			d.inMetadata = d.depth == 1 && k == "metadata"
			d.values(av, bv)
			d.depth--
			d.inMetadata = meta
		} else {
			d.emit()
		}
		d.buf = d.buf[:n]
	}
	if common == len(b) {
		return // no key of b is missing from a
	}
	for k := range b {
		if _, ok := a[k]; ok || d.ignored(k) {
			continue
		}
		n := d.key(k)
		d.emit()
		d.buf = d.buf[:n]
	}
}

func (d *differ) values(a, b any) {
	switch av := a.(type) {
	case map[string]any:
		if bv, ok := b.(map[string]any); ok {
			d.maps(av, bv)
			return
		}
	case []any:
		if bv, ok := b.([]any); ok {
			d.lists(av, bv)
			return
		}
	default:
		if abi.ScalarEqual(a, b) {
			return
		}
	}
	d.emit()
}

func (d *differ) lists(a, b []any) {
	// Elements are not under "metadata" directly, whatever the depth.
	meta := d.inMetadata
	d.inMetadata = false
	d.depth++
	for i := range max(len(a), len(b)) {
		n := d.index(i)
		if i < len(a) && i < len(b) {
			d.values(a[i], b[i])
		} else {
			d.emit()
		}
		d.buf = d.buf[:n]
	}
	d.depth--
	d.inMetadata = meta
}
