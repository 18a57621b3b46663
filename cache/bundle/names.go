package bundle

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
)

// checkName reports whether name may be an entry of a bundle: a relative,
// clean slash-separated path (fs.ValidPath: no "..", no ".", no empty
// element, no leading slash), without backslashes, control characters or
// upper-case letters. Module paths and versions are case-escaped, so no
// file of a bundle needs an upper-case letter, and two names never
// collide on a case-insensitive file system.
func checkName(name string) error {
	if !fs.ValidPath(name) || name == "." || len(name) > 1024 {
		return fmt.Errorf("%w: entry name %q is not a clean relative path", ErrHostile, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '\\' || r == ':' || ('A' <= r && r <= 'Z') || r > 0x7e {
			return fmt.Errorf("%w: entry name %q has a character a bundle never uses (%q)", ErrHostile, name, r)
		}
	}
	return nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
