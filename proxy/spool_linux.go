package proxy

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates size bytes for the spool file f (fallocate), so that a
// disk without room for the declared zip refuses it before its first byte
// is streamed to a client. It returns only a lack of space (ENOSPC,
// EDQUOT); a filesystem that cannot preallocate is left to fail, if it
// must, as the bytes are written.
func reserve(f *os.File, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return err
	}
	return nil
}
