package cache

import "unsafe"

// uintptrOf is the address of the first byte of b, for page alignment.
func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// trims reports whether a value of n bytes read or written through Badger
// lies in a memory-mapped value log file, so dropPages may be applied to
// it: only in an on-disk store, and only for values at least as long as
// the value threshold (shorter ones live in the LSM tree, whose memtable is
// heap memory).
func (s *Store) trims(n int) bool {
	return s.trimPages && !s.inMemory && int64(n) >= s.valueThreshold
}
