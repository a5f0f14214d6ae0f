package wasmhost

import "syscall"

// mapMemory reserves n bytes of zeroed, private address space; pages
// become resident when first touched.
func mapMemory(n uint64) ([]byte, bool) {
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	return b, err == nil
}

func unmapMemory(b []byte) { _ = syscall.Munmap(b) }
