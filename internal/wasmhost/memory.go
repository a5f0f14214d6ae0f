package wasmhost

import (
	"sync"

	"github.com/tetratelabs/wazero/experimental"
)

// linearMemory backs an instance's wasm memory and enforces the plugin's
// memory limit: a grow past it fails like any failed memory.grow, and the
// refusal is remembered so the crash that follows is reported as KindOOM.
//
// Where the system allows (memory_linux.go), the memory is a mapping of
// the limit's worth of address space, outside the Go heap: it grows in
// place, without copying, only the pages the guest touches are resident,
// and the host's garbage collector neither scans it nor counts it when it
// sizes the heap. Elsewhere it is a Go slice that grows geometrically, as
// wazero's default does.
type linearMemory struct {
	buf     []byte
	limit   uint64
	refused bool
	mapped  bool // buf is a mapping of limit bytes

	mu    sync.Mutex
	calls int  // calls running on the memory
	freed bool // Free came during a call: unmapped when it ends
}

func (m *linearMemory) Allocate(_, max uint64) experimental.LinearMemory {
	m.limit = min(m.limit, max)
	if b, ok := mapMemory(m.limit); ok {
		m.buf, m.mapped = b[:0], true
	}
	return m
}

func (m *linearMemory) Reallocate(size uint64) []byte {
	switch {
	case size > m.limit:
		m.refused = true
		return nil
	case size <= uint64(cap(m.buf)):
		m.buf = m.buf[:size]
	default:
		// Grow geometrically, as append would, but never past the limit.
		nb := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.limit))
		copy(nb, m.buf)
		m.buf = nb
	}
	return m.buf
}

// Free releases the memory; a mapping still in use by a call (the runtime
// closing every module at shutdown) is released when the call ends.
func (m *linearMemory) Free() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.calls > 0 {
		m.freed = true
		return
	}
	m.release()
}

func (m *linearMemory) release() {
	if m.mapped {
		unmapMemory(m.buf[:cap(m.buf)])
	}
	m.buf, m.mapped = nil, false
}

// enter and leave bracket a call on the memory.
func (m *linearMemory) enter() {
	m.mu.Lock()
	m.calls++
	m.mu.Unlock()
}

func (m *linearMemory) leave() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.calls--; m.calls == 0 && m.freed {
		m.release()
	}
}
