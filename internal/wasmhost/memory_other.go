//go:build !linux

package wasmhost

// Without a mapping the memory is a growing Go slice (memory.go).
func mapMemory(uint64) ([]byte, bool) { return nil, false }

func unmapMemory([]byte) {}
