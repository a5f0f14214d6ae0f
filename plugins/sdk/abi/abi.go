// Package abi is the single source of truth for the names, codes and limits
// of the Faro plugin ABI described in plugins/sdk/ABI.md, and for the forms
// of what crosses it: the event (Header, Event), its header layout, the
// event document get_field addresses (Event.FieldJSON) and the changes layout.
// Both sides of the boundary import it: the host (internal/wasmhost) and the
// guest SDK (plugins/sdk) with its native harness (plugins/sdk/sdktest), so
// they cannot drift apart.
package abi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Version is the ABI version this host and SDK speak. A guest reports the
// version it was built against from its ExportVersion function; the host refuses to
// load a module that reports anything else.
const Version = 1

// Exports every guest module must provide.
const (
	ExportMemory     = "memory"           // the guest's linear memory
	ExportInitialize = "_initialize"      // () -> (); WASI reactor initialisation
	ExportVersion    = "faro_abi_version" // () -> i32
	ExportHandle     = "faro_handle"      // (input_len i32) -> status i32
)

// ExportCheck is optional: () -> status i32. The host calls it once after
// ExportVersion; StatusError (with a set_error message) refuses the module,
// e.g. one that registers no handler or whose configuration does not fit.
const ExportCheck = "faro_check"

// HostModule is the import module under which the host functions live.
const HostModule = "faro"

// Functions of HostModule. Signatures are documented in ABI.md.
const (
	ImportReadInput  = "read_input"  // (ptr i32)
	ImportGetField   = "get_field"   // (path_ptr, path_len, buf_ptr, buf_cap i32) -> i32
	ImportGetChanges = "get_changes" // (path_ptr, path_len, buf_ptr, buf_cap i32) -> i32
	ImportGetConfig  = "get_config"  // (buf_ptr, buf_cap i32) -> i32
	ImportEmit       = "emit"        // (ptr, len i32) -> i32
	ImportSetError   = "set_error"   // (ptr, len i32)
	ImportLog        = "log"         // (level, ptr, len i32)
	ImportHTTPPost   = "http_post"   // (url_ptr, url_len, body_ptr, body_len, resp_ptr, resp_cap, resp_len_ptr i32) -> i32
)

// Values returned by ExportHandle.
const (
	StatusOK    int32 = 0 // the event was handled
	StatusError int32 = 1 // the handler failed; the message was passed to set_error
	StatusPanic int32 = 2 // the handler panicked; the message was passed to set_error
	// StatusConfig is returned by ExportCheck only: the plugin's
	// configuration does not fit what it declared; the message says which key.
	StatusConfig int32 = 3
)

// Results of host functions. Non-negative results are lengths (get_field,
// get_config), zero (emit) or an HTTP status code (http_post).
const (
	ErrNotFound int32 = -1 // get_field, get_config: nothing at that path, no config; get_changes: pointer over 4 KiB
	ErrInvalid  int32 = -2 // emit: not a JSON object; http_post: not an http(s) URL
	ErrLimit    int32 = -3 // emit: per-event output limit reached; http_post: body too large
	ErrDenied   int32 = -4 // http_post: host not in the plugin's allowed_hosts
	ErrFailed   int32 = -5 // http_post: the request failed or timed out
)

// Limits both sides rely on.
const (
	// MaxHTTPResponse is the most of a response body http_post hands back;
	// the rest is discarded. The SDK sizes its response buffer with it.
	MaxHTTPResponse = 64 << 10
	// MaxHTTPBody is the largest request body http_post accepts.
	MaxHTTPBody = 1 << 20
	// MaxRecords and MaxOutput cap what one event may emit: the number of
	// records and their total size in bytes. Past either cap emit returns
	// ErrLimit and the host fails the event with an output error.
	MaxRecords = 1000
	MaxOutput  = 1 << 20
)

// OutputError is nil when one more record of recLen bytes fits after
// records records of outBytes in all, else the error saying which of the
// per-event limits it breaks.
func OutputError(records, outBytes, recLen int) error {
	switch {
	case records >= MaxRecords:
		return fmt.Errorf("output over the per-event limit of %d records", MaxRecords)
	case outBytes+recLen > MaxOutput:
		return fmt.Errorf("output over the per-event limit of %d bytes: %d emitted, the next record has %d", MaxOutput, outBytes, recLen)
	}
	return nil
}

// JSONKind names the kind of JSON value b starts with, for messages.
func JSONKind(b []byte) string {
	b = bytes.TrimLeft(b, " \t\r\n")
	if !json.Valid(b) {
		return "invalid JSON"
	}
	switch b[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// Header is the event without its objects, as read_input delivers it:
// the scalar fields every handler gets for free (sdk.Event has them).
// Objects are fetched with get_field and get_changes.
type Header struct {
	Type            string // ADDED, UPDATED or DELETED
	GVR             string // "v1/configmaps", "apps/v1/deployments"
	Namespace       string // empty for cluster-scoped objects
	Name            string
	UID             string
	ResourceVersion string
	Rule            string // the config entry that matched: "resources[0]"
	Initial         bool   // part of the initial listing, not a live change
}

// Event is one event with its objects, as the host holds it and as the
// test harnesses take it (sdktest.Event and wasmtest): the header, and the
// object (for DELETED its last state) and, on UPDATED, the old object, in
// their JSON map form.
type Event struct {
	Header
	Object, OldObject map[string]any
}

// headerFixed is the size of the header's fixed part: seven little-endian
// u32 string lengths and the initial byte.
const headerFixed = 7*4 + 1

// AppendHeader appends h in the read_input layout: the lengths of Type,
// GVR, Namespace, Name, UID, ResourceVersion and Rule as little-endian u32,
// one byte Initial (0 or 1), then the seven strings' bytes in that order.
// It is binary rather than JSON so that decoding costs a guest no parsing
// loop: see internal/wasmhost/RATIONALE.md.
func AppendHeader(b []byte, h *Header) []byte {
	strs := [...]string{h.Type, h.GVR, h.Namespace, h.Name, h.UID, h.ResourceVersion, h.Rule}
	for _, s := range strs {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	}
	if h.Initial {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, s := range strs {
		b = append(b, s...)
	}
	return b
}

// ParseHeader decodes what AppendHeader wrote, with one allocation.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < headerFixed {
		return h, errors.New("abi: event header too short")
	}
	dst := [...]*string{&h.Type, &h.GVR, &h.Namespace, &h.Name, &h.UID, &h.ResourceVersion, &h.Rule}
	var lens [len(dst)]uint64
	total := uint64(headerFixed)
	for i := range lens {
		lens[i] = uint64(binary.LittleEndian.Uint32(b[4*i:]))
		total += lens[i]
	}
	if total != uint64(len(b)) || b[headerFixed-1] > 1 {
		return h, errors.New("abi: malformed event header")
	}
	h.Initial = b[headerFixed-1] == 1
	all := string(b[headerFixed:])
	for i, p := range dst {
		*p, all = all[:lens[i]], all[lens[i]:]
	}
	return h, nil
}

// AppendPointer appends the RFC 6901 JSON pointer of the unescaped path
// segments to b: AppendPointer(b, "metadata", "labels",
// "app.kubernetes.io/name") appends "/metadata/labels/app.kubernetes.io~1name".
func AppendPointer(b []byte, segments ...string) []byte {
	for _, s := range segments {
		b = append(b, '/')
		for i := 0; i < len(s); i++ {
			switch s[i] {
			case '~':
				b = append(b, '~', '0')
			case '/':
				b = append(b, '~', '1')
			default:
				b = append(b, s[i])
			}
		}
	}
	return b
}

// Lookup resolves an RFC 6901 JSON pointer against a value decoded by
// encoding/json or Kubernetes' unstructured package (map[string]any,
// []any, scalars). The empty pointer is the root itself. Array elements are
// addressed by decimal index.
func Lookup(root any, pointer string) (any, bool) {
	if pointer == "" {
		return root, true
	}
	if pointer[0] != '/' {
		return nil, false
	}
	cur := root
	for rest := pointer[1:]; ; {
		seg, next, more := strings.Cut(rest, "/")
		if strings.Contains(seg, "~") {
			seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		}
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[seg]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || seg[0] < '0' || seg[0] > '9' || i >= len(c) || (len(seg) > 1 && seg[0] == '0') {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
		if !more {
			return cur, true
		}
		rest = next
	}
}

// splitPointer splits a pointer into its first (unescaped) segment and the
// pointer to the rest: "/object/spec/replicas" is ("object", "/spec/replicas").
// ok is false for the empty pointer and for one not starting with '/'.
func splitPointer(pointer string) (first, rest string, ok bool) {
	if pointer == "" || pointer[0] != '/' {
		return "", "", false
	}
	first = pointer[1:]
	if i := strings.IndexByte(first, '/'); i >= 0 {
		first, rest = first[:i], first[i:] // rest keeps its '/': no allocation
	}
	if strings.Contains(first, "~") {
		first = strings.ReplaceAll(strings.ReplaceAll(first, "~1", "/"), "~0", "~")
	}
	return first, rest, true
}

// ValidRecord reports whether b is acceptable to emit: one JSON object.
func ValidRecord(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}

// Truncate returns b cut to at most n bytes, at a rune boundary, so that a
// cut message or value stays valid UTF-8 where it was.
func Truncate[T string | []byte](b T, n int) T {
	if len(b) <= n {
		return b
	}
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return b[:n]
}
