//go:build !linux

package cache

// dropPages does nothing outside Linux; see trim_linux.go.
func dropPages([]byte) {}
