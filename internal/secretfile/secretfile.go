// Package secretfile reads the secret files of the data directory (the CA
// key, the enterprise note key, the admin token): each must be readable by
// its owner only, and one check says so for all of them. It imports
// nothing of modgate's.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// ErrInsecureKey reports a secret file that group or others may read.
var ErrInsecureKey = errors.New("secret file is readable by group or others")

// CheckMode returns an error wrapping ErrInsecureKey, with the chmod that
// fixes it, if mode lets group or others read or write path. Windows has
// no POSIX modes to check.
func CheckMode(path string, mode fs.FileMode) error {
	if perm := mode.Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: %w (run: chmod 600 %s)", path, perm, ErrInsecureKey, path)
	}
	return nil
}

// Read reads the secret file at path after CheckMode. The mode is checked
// on the open file, so it is the file that is read.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	if err := CheckMode(path, fi.Mode()); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("reading secret %s: %w", path, err)
	}
	return b, nil
}
