// Package object is the form in which Faro's informers cache watched
// objects: between the API server's wire bytes and the rules. An Object is
// the object's JSON as the server sent it, minus metadata.managedFields and
// (unless kept) the last-applied-configuration annotation, plus the few
// metadata fields the informer machinery and the ledger read, parsed once.
// Nothing builds the object's map form until a rule's CEL or a plugin reads
// its body (Unstructured), so a cached object costs about its JSON size; an
// object of a resource whose rules read nothing but metadata is cached as
// its identity and labels alone (Options.MetadataOnly).
package object

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// LastApplied is the annotation kubectl apply writes: a second copy of the
// object's configuration (for a Secret, its data in clear).
const LastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// Object is one cached object: its JSON, and its identity read from it.
// The identity strings share the JSON's bytes, and labels are read from
// the JSON when asked for, so an Object costs little more than its JSON.
// An Object is immutable once decoded and safe to share; it implements
// metav1.Object for the informer machinery, whose getters of fields other
// than identity, labels and annotations return zero values (the body has
// them: Unstructured) and whose setters panic.
type Object struct {
	metav1.TypeMeta
	Namespace, Name, ResourceVersion string
	UID                              types.UID

	raw    []byte
	labels span // the labels object in raw; empty when there are none
	rv     uint64
	rvOK   bool
	// partial: decoded with MetadataOnly.
	partial bool
	// annotations is set only on a bookmark that ends initial events.
	annotations map[string]string
	// owner is not part of the object: it is kept for the one component
	// downstream that tracks the object (the engine's delivery ledger notes
	// its record of the object here), which alone reads and writes it,
	// under its own lock.
	owner any
}

var (
	_ runtime.Object = (*Object)(nil)
	_ metav1.Object  = (*Object)(nil)
)

// Options says what Decode keeps.
type Options struct {
	// KeepLastApplied keeps the last-applied-configuration annotation.
	KeepLastApplied bool
	// MetadataOnly keeps only apiVersion, kind and the metadata rules
	// without CEL or plugins read (name, namespace, uid, resourceVersion,
	// labels): what is cached of a resource whose rules read nothing else.
	// Such an Object is Partial.
	MetadataOnly bool
}

// Decode makes an Object of one object's JSON. raw is not retained when
// anything is stripped from it; otherwise the Object keeps it, so the caller
// must not modify it afterwards.
func Decode(raw []byte, opts Options) (*Object, error) {
	return decode(raw, opts, nil)
}

// decode is Decode of an object whose apiVersion and kind, when its JSON
// lacks them (the items of a list of a built-in type), are written into
// its JSON from typeHead (see typeHead; nil: none), so that every reader
// sees them.
func decode(raw []byte, opts Options, typeHead []byte) (*Object, error) {
	o := &Object{}
	s := scanner{buf: raw}
	if err := o.read(&s, &opts); err != nil {
		return nil, fmt.Errorf("decoding object: %w", err)
	}
	out := s.without()
	if o.Kind == "" && o.APIVersion == "" && typeHead != nil {
		out = withType(out, typeHead)
	}
	if len(out) != len(raw) {
		// Read again so that the identity shares the new bytes, not the
		// old ones. The initial-events mark is kept: its value is a copy,
		// and MetadataOnly dropped the annotations that held it.
		ann := o.annotations
		*o = Object{}
		if err := o.read(&scanner{buf: out}, nil); err != nil {
			return nil, fmt.Errorf("decoding object: %w", err)
		}
		o.annotations = ann
	}
	o.raw = out
	o.rv, o.rvOK = ParseRV(o.ResourceVersion)
	o.partial = opts.MetadataOnly
	return o, nil
}

// FromUnstructured makes an Object of u as it is (nothing stripped).
func FromUnstructured(u *unstructured.Unstructured) (*Object, error) {
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("object %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	return Decode(raw, Options{KeepLastApplied: true})
}

// JSON returns the object's JSON. It must not be modified.
func (o *Object) JSON() []byte { return o.raw }

// MarshalJSON returns the object's JSON.
func (o *Object) MarshalJSON() ([]byte, error) { return o.raw, nil }

// Partial reports whether the object was decoded with MetadataOnly: its
// JSON holds apiVersion, kind and the identity and labels of its metadata,
// not the rest of the object.
func (o *Object) Partial() bool { return o.partial }

// RV returns the resource version as an unsigned integer (etcd's), and
// whether it is one.
func (o *Object) RV() (uint64, bool) { return o.rv, o.rvOK }

// LabelSet returns the object's labels, read from its JSON on each lookup.
func (o *Object) LabelSet() labels.Labels { return (*objectLabels)(o) }

// Unstructured decodes the object's body into a new map form, numbers as
// the API machinery decodes them (int64 where integral). Each call decodes
// anew; the caller owns the result.
func (o *Object) Unstructured() (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	if err := utiljson.Unmarshal(o.raw, &u.Object); err != nil {
		return nil, fmt.Errorf("object %s: %w", o.describe(), err)
	}
	return u, nil
}

func (o *Object) describe() string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}

// DeepCopyObject returns a copy, without an owner; the JSON is shared,
// being immutable.
func (o *Object) DeepCopyObject() runtime.Object {
	c := *o
	c.annotations = maps.Clone(o.annotations)
	c.owner = nil
	return &c
}

// Owner returns what SetOwner noted.
func (o *Object) Owner() any { return o.owner }

// SetOwner notes v for the component that tracks the object (see Object).
func (o *Object) SetOwner(v any) { o.owner = v }

// Identity returns an Object that holds only an object's identity: what is
// left to report of an object whose last state is unknown.
func Identity(apiVersion, kind, namespace, name string, uid types.UID, resourceVersion string) *Object {
	md := map[string]any{"name": name, "uid": string(uid)}
	if namespace != "" {
		md["namespace"] = namespace
	}
	if resourceVersion != "" {
		md["resourceVersion"] = resourceVersion
	}
	raw, _ := json.Marshal(map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md})
	o, _ := Decode(raw, Options{})
	return o
}

// typeHead is the start of an object of type typ: its opening brace, kind
// and apiVersion.
func typeHead(typ metav1.TypeMeta) []byte {
	head, _ := json.Marshal(typ) // {"kind":...,"apiVersion":...}
	return head[:len(head)-1]
}

// withType returns the object raw with head (see typeHead) first.
func withType(raw, head []byte) []byte {
	i := bytes.IndexByte(raw, '{') + 1
	rest := bytes.TrimLeft(raw[i:], " \t\r\n")
	out := make([]byte, 0, len(head)+len(rest)+1)
	out = append(out, head...)
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// ParseRV parses a resource version as an unsigned integer (etcd's are),
// and reports whether it is one.
func ParseRV(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// read reads the fields Object holds from the JSON in s, in one walk:
// members are located by their spans and only the few it reads are
// decoded. With opts, it also marks in s what Decode strips.
func (o *Object) read(s *scanner, opts *Options) error {
	return s.object(func(key []byte, v span) (bool, error) {
		switch string(key) {
		case "apiVersion":
			return false, s.str(v, &o.APIVersion)
		case "kind":
			return false, s.str(v, &o.Kind)
		case "metadata":
			return false, s.objectAt(v, func(key []byte, mv span) (bool, error) {
				switch string(key) {
				case "name":
					return false, s.str(mv, &o.Name)
				case "namespace":
					return false, s.str(mv, &o.Namespace)
				case "uid":
					var uid string
					err := s.str(mv, &uid)
					o.UID = types.UID(uid)
					return false, err
				case "resourceVersion":
					return false, s.str(mv, &o.ResourceVersion)
				case "labels":
					if s.buf[mv.start] == 'n' {
						return false, nil
					}
					if s.buf[mv.start] != '{' {
						return false, fmt.Errorf("%w: labels at offset %d are not an object", errSyntax, mv.start)
					}
					o.labels = mv
					return false, nil
				case "managedFields":
					return opts != nil, nil
				case "annotations":
					if opts == nil || !opts.MetadataOnly {
						return o.annotationsAt(s, mv, opts)
					}
					// Read for the initial-events mark, then dropped whole.
					outer := len(s.cut)
					_, err := o.annotationsAt(s, mv, opts)
					s.cut = s.cut[:outer]
					return true, err
				}
				return opts != nil && opts.MetadataOnly, nil
			})
		}
		return opts != nil && opts.MetadataOnly, nil
	})
}

// annotationsAt reads the annotations member v, with opts dropping
// last-applied unless kept; it reports whether the member itself goes
// (nothing left in it).
func (o *Object) annotationsAt(s *scanner, v span, opts *Options) (bool, error) {
	if s.buf[v.start] == 'n' {
		return false, nil
	}
	outer := len(s.cut)
	var members, dropped int
	err := s.objectAt(v, func(key []byte, av span) (bool, error) {
		members++
		switch string(key) {
		case LastApplied:
			if opts != nil && !opts.KeepLastApplied {
				dropped++
				return true, nil
			}
		case metav1.InitialEventsAnnotationKey:
			var val string
			if err := s.str(av, &val); err != nil {
				return false, err
			}
			o.annotations = map[string]string{metav1.InitialEventsAnnotationKey: strings.Clone(val)}
		}
		return false, nil
	})
	if err != nil || members == 0 || members != dropped {
		return false, err
	}
	s.cut = s.cut[:outer] // the whole member goes instead
	return true, nil
}

// objectLabels reads an Object's labels from its JSON as labels.Labels.
type objectLabels Object

func (l *objectLabels) Has(key string) bool {
	_, ok := l.Lookup(key)
	return ok
}

func (l *objectLabels) Get(key string) string {
	v, _ := l.Lookup(key)
	return v
}

func (l *objectLabels) Lookup(key string) (value string, found bool) {
	if l.labels.end == 0 {
		return "", false
	}
	s := scanner{buf: l.raw}
	_, _ = s.members(l.labels.start, func(k []byte, v span) (bool, error) {
		if !found && string(k) == key && s.str(v, &value) == nil {
			found = true
		}
		return false, nil
	})
	return value, found
}

// span locates one value in [start, end).
type span struct{ start, end int }

// scanner walks JSON that the API server produced. It checks structure as
// far as it walks and refuses what it cannot walk. It collects the spans of
// the members its callers drop.
type scanner struct {
	buf []byte
	cut []span
}

var errSyntax = errors.New("malformed JSON")

func (s *scanner) ws(i int) int {
	for i < len(s.buf) {
		switch s.buf[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// object walks the top-level object.
func (s *scanner) object(f func(key []byte, v span) (bool, error)) error {
	end, err := s.members(s.ws(0), f)
	if err != nil {
		return err
	}
	if s.ws(end) != len(s.buf) {
		return fmt.Errorf("%w: data after the object at offset %d", errSyntax, end)
	}
	return nil
}

// objectAt walks the object that is the value v.
func (s *scanner) objectAt(v span, f func(key []byte, v span) (bool, error)) error {
	_, err := s.members(v.start, f)
	return err
}

// members walks the object starting at i, calling f for each member, and
// returns the offset after it. The members f drops are cut with the commas
// that would be left dangling.
func (s *scanner) members(i int, f func(key []byte, v span) (drop bool, err error)) (int, error) {
	if i >= len(s.buf) || s.buf[i] != '{' {
		return 0, fmt.Errorf("%w: want an object at offset %d", errSyntax, i)
	}
	i = s.ws(i + 1)
	if i < len(s.buf) && s.buf[i] == '}' {
		return i + 1, nil
	}
	// run is the first of the dropped members since the last kept one
	// (-1: none); keptEnd the end of the last kept member (-1: none).
	run, keptEnd := -1, -1
	for {
		memberStart := i
		if i >= len(s.buf) || s.buf[i] != '"' {
			return 0, fmt.Errorf("%w: want a key at offset %d", errSyntax, i)
		}
		keyEnd, err := s.skipString(i)
		if err != nil {
			return 0, err
		}
		key := s.buf[i+1 : keyEnd-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(s.buf[i:keyEnd], &k); err != nil {
				return 0, fmt.Errorf("%w: key at offset %d: %v", errSyntax, i, err)
			}
			key = []byte(k)
		}
		i = s.ws(keyEnd)
		if i >= len(s.buf) || s.buf[i] != ':' {
			return 0, fmt.Errorf("%w: want ':' at offset %d", errSyntax, i)
		}
		vStart := s.ws(i + 1)
		vEnd, err := s.skip(vStart)
		if err != nil {
			return 0, err
		}
		i = s.ws(vEnd)
		if i >= len(s.buf) || (s.buf[i] != '}' && s.buf[i] != ',') {
			return 0, fmt.Errorf("%w: want ',' or '}' at offset %d", errSyntax, i)
		}
		drop, err := f(key, span{vStart, vEnd})
		if err != nil {
			return 0, err
		}
		switch {
		case drop && run < 0:
			run = memberStart
		case !drop && run >= 0:
			// The dropped run goes up to this member, commas included.
			s.cut = append(s.cut, span{run, memberStart})
			run = -1
		}
		if !drop {
			keptEnd = vEnd
		}
		if s.buf[i] == '}' {
			if run >= 0 {
				// The run ends the object: it goes from the end of the
				// last kept member (its comma with it), or it is all.
				from := run
				if keptEnd >= 0 {
					from = keptEnd
				}
				s.cut = append(s.cut, span{from, vEnd})
			}
			return i + 1, nil
		}
		i = s.ws(i + 1)
	}
}

// skip returns the offset after the value starting at i.
func (s *scanner) skip(i int) (int, error) {
	if i >= len(s.buf) {
		return 0, fmt.Errorf("%w: want a value at offset %d", errSyntax, i)
	}
	switch c := s.buf[i]; {
	case c == '"':
		return s.skipString(i)
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(s.buf); j++ {
			switch s.buf[j] {
			case '"':
				e, err := s.skipString(j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("%w: unterminated value at offset %d", errSyntax, i)
	default:
		// A number, true, false or null: up to the next delimiter.
		j := i
		for j < len(s.buf) {
			switch s.buf[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if j == i {
					return 0, fmt.Errorf("%w: want a value at offset %d", errSyntax, i)
				}
				return j, nil
			}
			j++
		}
		return j, nil
	}
}

// skipString returns the offset after the string starting at i.
func (s *scanner) skipString(i int) (int, error) {
	for j := i + 1; j < len(s.buf); j++ {
		switch s.buf[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%w: unterminated string at offset %d", errSyntax, i)
}

// str decodes the string value v into dst; null leaves it empty.
func (s *scanner) str(v span, dst *string) error {
	b := s.buf[v.start:v.end]
	if len(b) >= 2 && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 {
		// Shares the buffer, which is immutable.
		*dst = unsafe.String(unsafe.SliceData(b[1:]), len(b)-2)
		return nil
	}
	var decoded string // escaped, or null
	if err := json.Unmarshal(b, &decoded); err != nil {
		return fmt.Errorf("%w: string at offset %d: %v", errSyntax, v.start, err)
	}
	*dst = decoded
	return nil
}

// without returns the buffer with the cut spans removed: the buffer
// itself when nothing was cut, else a copy.
func (s *scanner) without() []byte {
	if len(s.cut) == 0 {
		return s.buf
	}
	slices.SortFunc(s.cut, func(a, b span) int { return a.start - b.start })
	n := len(s.buf)
	for _, c := range s.cut {
		n -= c.end - c.start
	}
	out := make([]byte, 0, n)
	at := 0
	for _, c := range s.cut {
		out = append(out, s.buf[at:c.start]...)
		at = c.end
	}
	return append(out, s.buf[at:]...)
}
