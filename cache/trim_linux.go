package cache

import (
	"os"
	"syscall"
)

// pageSize is the size of a memory page.
var pageSize = os.Getpagesize()

// dropPages drops from the process's resident set the whole pages inside
// b, a value that Badger handed out as a slice of one of its memory-mapped
// value log files.
//
// Badger maps its value log files and offers no option not to, so every
// page of a blob written or read through it stays resident (as RssFile)
// until the kernel is short of memory: serving one 300 MiB zip would add
// 300 MiB to the RSS that container limits and monitors see. With
// MADV_DONTNEED on a shared file mapping, the kernel only removes the
// process's page-table entries: the data stays in the page cache (a dirty
// page stays dirty and is written back as usual, so a later Sync still
// makes it durable), and a later access faults it back in from there.
//
// It must be called only on a slice of a file mapping, and only while
// Badger keeps that file mapped (inside an Item.Value callback, with the
// transaction open); on anonymous memory it would discard data. Errors are
// ignored: the pages then simply stay resident.
func dropPages(b []byte) {
	if len(b) < 2*pageSize {
		return
	}
	off := 0
	if r := int(uintptrOf(b) % uintptr(pageSize)); r != 0 {
		off = pageSize - r
	}
	b = b[off:]
	_ = syscall.Madvise(b[:len(b)&^(pageSize-1)], syscall.MADV_DONTNEED)
}
