//go:build unix

package main

import "syscall"

// settleDisk writes out every dirty page before a timed run. Decision: a
// run leaves about a gigabyte of extracted files and their removal (with
// ext4's online discard) to be written back; without this, that writeback
// lands in the next timed run, whichever side it is, and cold runs of the
// same build varied from 8 s to 14 s.
func settleDisk() { syscall.Sync() }
