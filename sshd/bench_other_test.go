//go:build !linux

package sshd

// hugePageBuffer: without Linux's MADV_HUGEPAGE, a plain heap buffer.
func hugePageBuffer(n int) ([]uint64, func()) { return make([]uint64, n), func() {} }
