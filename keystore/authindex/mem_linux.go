package authindex

import (
	"runtime"
	"syscall"
	"unsafe"
)

const hugePage = 2 << 20

// allocSlots returns n zeroed words for a key table. A large table lives
// outside the Go heap in memory mapped with MADV_HUGEPAGE: with 2 MiB pages
// a lookup in a table of a million keys costs a cache miss but rarely a
// TLB miss (with 4 KiB pages, and nested paging in a VM, the page walk
// costs as much as the miss). owner keeps the mapping alive: it is unmapped
// once owner is unreachable. Small tables, and any mapping failure, use the
// Go heap.
func allocSlots(owner *keyTable, n uint64) (w []uint64, offHeap int) {
	size := n * 8
	if size < 4*hugePage {
		return make([]uint64, n), 0
	}
	size = (size + hugePage - 1) &^ (hugePage - 1)
	mem, err := syscall.Mmap(-1, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]uint64, n), 0
	}
	_ = syscall.Madvise(mem, 14) // MADV_HUGEPAGE; without THP, plain pages
	runtime.AddCleanup(owner, func(m []byte) { _ = syscall.Munmap(m) }, mem)
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n), int(size)
}
