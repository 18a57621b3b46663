//go:build !linux

package cache

import "errors"

// diskChecks says whether free-space checks are implemented here.
const diskChecks = false

// errNoStatfs is returned by statfs where it is not implemented: stores
// are then admitted without a free-space check.
var errNoStatfs = errors.New("free space checks are implemented on Linux only")

// statfs is not implemented outside Linux.
func statfs(string) (fsStat, error) { return fsStat{}, errNoStatfs }

// preallocator does nothing outside Linux.
type preallocator struct{}

func newPreallocator(string) (*preallocator, error) { return nil, nil }

func (*preallocator) ensure() error { return nil }

// checkWritable leaves the check to Badger outside Linux.
func checkWritable(string) error { return nil }
