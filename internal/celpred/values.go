package celpred

import (
	"reflect"
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// The CEL view of an unstructured object is built lazily, one map or list at
// a time, and memoized: the first evaluation that reaches a map converts its
// entries (strings and numbers become CEL values, nested maps and lists
// become unconverted lazy nodes) into a cel-go map, and every later access,
// from any entry and any goroutine, reuses it. So an event is converted at
// most once, only as deep as some rule reads it, and evaluations read
// converted values without allocating. (An eager conversion of a 2.5 KB
// Deployment costs ~360 allocations; the typical rule reads three levels.)
//
// The nodes delegate every CEL operation to the converted cel-go map or list
// (types.NewRefValMap, types.NewRefValList), so equality, `in`, size,
// iteration, conversions and the libraries behave exactly as on cel-go's
// own values.

// toVal converts an unstructured value: scalars now, maps and lists lazily.
func toVal(v any) ref.Val {
	switch x := v.(type) {
	case nil:
		return types.NullValue
	case string:
		return types.String(x)
	case bool:
		return types.Bool(x)
	case int64:
		return types.Int(x)
	case float64:
		return types.Double(x)
	case map[string]any:
		return &lazyMap{raw: x}
	case []any:
		return &lazyList{raw: x}
	case int:
		return types.Int(x)
	case int32:
		return types.Int(x)
	default:
		// Not unstructured JSON (hand-built maps holding Go values).
		return types.DefaultTypeAdapter.NativeToValue(v)
	}
}

// lazyMap is a JSON object converted on first use. Lookups, the hot path,
// go straight to a map keyed by Go strings (cel-go's generic map hashes
// interface keys, ~30% of a typical evaluation); the operations that are
// rare in rules (conversion to native values) go to a cel-go map built on
// demand over the same values.
type lazyMap struct {
	raw  map[string]any
	once sync.Once
	m    map[string]ref.Val

	celOnce sync.Once
	cel     traits.Mapper
}

var (
	_ traits.Mapper   = (*lazyMap)(nil)
	_ traits.Foldable = (*lazyMap)(nil)
	_ traits.Zeroer   = (*lazyMap)(nil)
)

func (l *lazyMap) val() map[string]ref.Val {
	l.once.Do(func() {
		m := make(map[string]ref.Val, len(l.raw))
		for k, v := range l.raw {
			m[k] = toVal(v)
		}
		l.m = m
	})
	return l.m
}

func (l *lazyMap) celMap() traits.Mapper {
	l.celOnce.Do(func() {
		m := make(map[string]any, len(l.raw))
		for k, v := range l.val() {
			m[k] = v
		}
		l.cel = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	})
	return l.cel
}

// Find implements traits.Mapper. As in cel-go's string-keyed maps, a key of
// another type is absent.
func (l *lazyMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	v, found := l.val()[string(k)]
	return v, found
}

// Get implements traits.Indexer.
func (l *lazyMap) Get(key ref.Val) ref.Val {
	v, found := l.Find(key)
	if !found {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

// Contains implements traits.Container.
func (l *lazyMap) Contains(key ref.Val) ref.Val {
	_, found := l.Find(key)
	return types.Bool(found)
}

// Iterator implements traits.Iterable.
func (l *lazyMap) Iterator() traits.Iterator {
	keys := make([]string, 0, len(l.raw))
	for k := range l.raw {
		keys = append(keys, k)
	}
	return types.NewStringList(types.DefaultTypeAdapter, keys).Iterator()
}

// Fold implements traits.Foldable.
func (l *lazyMap) Fold(f traits.Folder) {
	for k, v := range l.val() {
		if !f.FoldEntry(k, v) {
			break
		}
	}
}

// Size implements traits.Sizer.
func (l *lazyMap) Size() ref.Val { return types.Int(len(l.raw)) }

// IsZeroValue implements traits.Zeroer.
func (l *lazyMap) IsZeroValue() bool { return len(l.raw) == 0 }

// Equal implements ref.Val, as cel-go's maps do.
func (l *lazyMap) Equal(other ref.Val) ref.Val {
	o, ok := other.(traits.Mapper)
	if !ok {
		return types.False
	}
	if o.Size() != l.Size() {
		return types.False
	}
	for k, v := range l.val() {
		ov, found := o.Find(types.String(k))
		if !found || types.Equal(v, ov) == types.False {
			return types.False
		}
	}
	return types.True
}

// ConvertToType implements ref.Val.
func (l *lazyMap) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return l
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from '%s' to '%s'", types.MapType, t)
}

// Type implements ref.Val.
func (l *lazyMap) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (l *lazyMap) Value() any { return l.celMap().Value() }

// ConvertToNative implements ref.Val.
func (l *lazyMap) ConvertToNative(t reflect.Type) (any, error) {
	return l.celMap().ConvertToNative(t)
}

// lazyList is a JSON array converted on first use.
type lazyList struct {
	raw  []any
	once sync.Once
	l    traits.Lister
}

var (
	_ traits.Lister   = (*lazyList)(nil)
	_ traits.Foldable = (*lazyList)(nil)
	_ traits.Zeroer   = (*lazyList)(nil)
)

func (l *lazyList) val() traits.Lister {
	l.once.Do(func() {
		vals := make([]ref.Val, len(l.raw))
		for i, v := range l.raw {
			vals[i] = toVal(v)
		}
		l.l = types.NewRefValList(types.DefaultTypeAdapter, vals)
	})
	return l.l
}

func (l *lazyList) Add(other ref.Val) ref.Val        { return l.val().Add(other) }
func (l *lazyList) Get(index ref.Val) ref.Val        { return l.val().Get(index) }
func (l *lazyList) Contains(elem ref.Val) ref.Val    { return l.val().Contains(elem) }
func (l *lazyList) Iterator() traits.Iterator        { return l.val().Iterator() }
func (l *lazyList) Fold(f traits.Folder)             { types.ToFoldableList(l.val()).Fold(f) }
func (l *lazyList) Size() ref.Val                    { return types.Int(len(l.raw)) }
func (l *lazyList) IsZeroValue() bool                { return len(l.raw) == 0 }
func (l *lazyList) Equal(other ref.Val) ref.Val      { return l.val().Equal(other) }
func (l *lazyList) Type() ref.Type                   { return types.ListType }
func (l *lazyList) Value() any                       { return l.val().Value() }
func (l *lazyList) ConvertToType(t ref.Type) ref.Val { return l.val().ConvertToType(t) }
func (l *lazyList) ConvertToNative(t reflect.Type) (any, error) {
	return l.val().ConvertToNative(t)
}

// measure records the largest collection and string (map keys included) of
// an unstructured value, without converting it. Values that are not
// unstructured JSON make the sizes unknown (too large).
func measure(v any, st *sizeStats) {
	switch x := v.(type) {
	case nil, bool, int64, float64, int, int32:
	case string:
		st.maxString = max(st.maxString, len(x))
	case map[string]any:
		st.maxCollection = max(st.maxCollection, len(x))
		for k, e := range x {
			st.maxString = max(st.maxString, len(k))
			measure(e, st)
		}
	case []any:
		st.maxCollection = max(st.maxCollection, len(x))
		for _, e := range x {
			measure(e, st)
		}
	default:
		st.maxString = maxStringSize + 1
	}
}
