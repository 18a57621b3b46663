//go:build !unix

package main

// settleDisk does nothing where there is no sync(2).
func settleDisk() {}
