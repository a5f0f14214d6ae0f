package wasmhost

import (
	"errors"
	"fmt"
)

// Kind classifies why a plugin call failed.
type Kind uint8

// Failure kinds. By default only KindError is worth retrying: the plugin
// itself said the event failed (often a transient problem, e.g. its webhook
// was down). The others are deterministic or not the plugin's doing; the
// instance that produced a KindTrap, KindTimeout, KindOOM or KindCanceled
// has been closed and replaced.
const (
	KindError    Kind = iota + 1 // the handler returned an error
	KindTrap                     // the guest crashed: wasm trap, runtime fatal error, exit
	KindTimeout                  // the call ran past the plugin's timeout and was stopped
	KindOOM                      // the instance hit the plugin's memory limit
	KindOutput                   // per-event output limits exceeded, or a bad ABI status
	KindCanceled                 // the caller's context ended or the plugin was closed
	KindPanic                    // the handler panicked (caught by the SDK; the instance lives on)
)

var kindNames = [...]string{
	KindError:    "error",
	KindTrap:     "trap",
	KindTimeout:  "timeout",
	KindOOM:      "out-of-memory",
	KindOutput:   "output",
	KindCanceled: "canceled",
	KindPanic:    "panic",
}

// ParseKind returns the kind a name (Kind.String) stands for.
func ParseKind(name string) (Kind, bool) {
	for k, n := range kindNames {
		if n != "" && n == name {
			return Kind(k), true
		}
	}
	return 0, false
}

// KindNames lists the kind names, in order.
func KindNames() []string {
	var names []string
	for _, n := range kindNames {
		if n != "" {
			names = append(names, n)
		}
	}
	return names
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Error is the error Plugin.Handle returns.
type Error struct {
	Plugin string
	Kind   Kind
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Kind, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ErrClosed is the Err of a KindCanceled error from a closed Plugin.
var ErrClosed = errors.New("plugin closed")
