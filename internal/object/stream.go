package object

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// List is a list response: its metadata and its items as Objects.
type List struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []*Object
}

var _ runtime.Object = (*List)(nil)

// DeepCopyObject returns a copy sharing the (immutable) items.
func (l *List) DeepCopyObject() runtime.Object {
	c := *l
	l.ListMeta.DeepCopyInto(&c.ListMeta)
	c.Items = append([]*Object(nil), l.Items...)
	return &c
}

// DecodeList reads a list response from r, one item at a time: the
// response is never held whole, only each item's Object.
func DecodeList(r io.Reader, opts Options) (*List, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	l := &List{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("decoding list: %w", err)
		}
		switch key, _ := tok.(string); key {
		case "apiVersion":
			err = dec.Decode(&l.APIVersion)
		case "kind":
			err = dec.Decode(&l.Kind)
		case "metadata":
			err = dec.Decode(&l.ListMeta)
		case "items":
			err = l.decodeItems(dec, opts)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return nil, fmt.Errorf("decoding list: %s: %w", tok, err)
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *List) decodeItems(dec *json.Decoder, opts Options) error {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return err // null: no items
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("want an array, got %v", tok)
	}
	head := l.itemTypeHead()
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		o, err := decode(raw, opts, head)
		if err != nil {
			return fmt.Errorf("item %d: %w", len(l.Items), err)
		}
		l.Items = append(l.Items, o)
	}
	_, err = dec.Token() // ']'
	return err
}

// itemTypeHead is the typeHead of the list's items, from its own type (the
// server writes it before the items, and leaves it out of the items of a
// list of a built-in type); nil when the list has none.
func (l *List) itemTypeHead() []byte {
	kind, ok := strings.CutSuffix(l.Kind, "List")
	if !ok || kind == "" {
		return nil
	}
	return typeHead(metav1.TypeMeta{APIVersion: l.APIVersion, Kind: kind})
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("decoding list: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("decoding list: want %q, got %v", want, tok)
	}
	return nil
}

// WatchDecoder decodes a watch response stream (JSON events, one after
// another) into events whose objects are Objects; an ERROR event carries
// the server's *metav1.Status. It is the decoder of a watch.StreamWatcher.
type WatchDecoder struct {
	r    io.ReadCloser
	dec  *json.Decoder
	opts Options
}

var _ watch.Decoder = (*WatchDecoder)(nil)

// NewWatchDecoder decodes the watch stream r; Close closes r.
func NewWatchDecoder(r io.ReadCloser, opts Options) *WatchDecoder {
	return &WatchDecoder{r: r, dec: json.NewDecoder(r), opts: opts}
}

// Decode returns the next event.
func (d *WatchDecoder) Decode() (watch.EventType, runtime.Object, error) {
	var ev struct {
		Type   watch.EventType `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := d.dec.Decode(&ev); err != nil {
		return "", nil, err
	}
	switch ev.Type {
	case watch.Added, watch.Modified, watch.Deleted, watch.Bookmark:
		o, err := Decode(ev.Object, d.opts)
		if err != nil {
			return "", nil, fmt.Errorf("watch event %s: %w", ev.Type, err)
		}
		return ev.Type, o, nil
	case watch.Error:
		st := &metav1.Status{}
		if err := json.Unmarshal(ev.Object, st); err != nil {
			return "", nil, fmt.Errorf("watch event ERROR: %w", err)
		}
		return ev.Type, st, nil
	default:
		return "", nil, fmt.Errorf("watch event of unknown type %q", ev.Type)
	}
}

// Close closes the stream.
func (d *WatchDecoder) Close() { _ = d.r.Close() }
