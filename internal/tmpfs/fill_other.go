//go:build !linux

package tmpfs

import "testing"

// Free is implemented on Linux only.
func Free(t testing.TB, dir string) int64 {
	unavailable(t, "tmpfs tests run on Linux only")
	return 0
}

// FillTo is implemented on Linux only.
func FillTo(t testing.TB, dir, name string, free int64) {
	unavailable(t, "tmpfs tests run on Linux only")
}
