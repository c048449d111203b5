package sshd

import (
	"syscall"
	"unsafe"
)

// hugePageBuffer maps n words outside the Go heap with MADV_HUGEPAGE, as
// keystore maps a large key table.
func hugePageBuffer(n int) ([]uint64, func()) {
	mem, err := syscall.Mmap(-1, 0, n*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n), func() {}
	}
	_ = syscall.Madvise(mem, 14) // MADV_HUGEPAGE
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n), func() { _ = syscall.Munmap(mem) }
}
