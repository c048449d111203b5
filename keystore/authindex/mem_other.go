//go:build !linux

package authindex

// allocSlots returns n zeroed words for a key table (on the Go heap).
func allocSlots(owner *keyTable, n uint64) (w []uint64, offHeap int) {
	return make([]uint64, n), 0
}
