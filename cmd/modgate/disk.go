package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/dustin/go-humanize"

	"github.com/modgate/modgate/cache"
)

// minFree is the --min-free flag: a size such as "2GiB", a percentage of
// the cache's filesystem such as "10%", or both as "2GiB,10%" (the larger
// one applies). "" means the default: the larger of 1 GiB and 5%.
type minFree cache.FreeSpace

// String implements pflag.Value.
func (m *minFree) String() string {
	if *m == (minFree{}) {
		return ""
	}
	return cache.FreeSpace(*m).String()
}

// Set implements pflag.Value.
func (m *minFree) Set(s string) error {
	var f cache.FreeSpace
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
			continue
		case strings.HasSuffix(part, "%"):
			p, err := strconv.ParseFloat(strings.TrimSuffix(part, "%"), 64)
			if err != nil || p < 0 || p >= 100 {
				return fmt.Errorf("%q is not a percentage in [0, 100)", part)
			}
			f.Percent = p
		default:
			n, err := humanize.ParseBytes(part)
			if err != nil || n > 1<<62 {
				return fmt.Errorf("%q is not a size such as 2GiB or a percentage such as 10%%", part)
			}
			f.Bytes = int64(n)
		}
	}
	if s != "" && f == (cache.FreeSpace{}) {
		// "0": no floor at all (the reserve Badger needs stays).
		f.Bytes = 1
	}
	*m = minFree(f)
	return nil
}

// Type implements pflag.Value.
func (m *minFree) Type() string { return "size|percent" }

// degraded returns why the gate serves in a degraded way, or "": the
// cache refuses new objects (full disk, read-only filesystem).
func (g *gateParts) degraded() string {
	if why := g.clusterDegraded(); why != "" { // cluster.go
		return why
	}
	if why := g.cache.Space().Full(); why != "" {
		return "cache disk full: " + why + "; new objects are refused (507), cached ones are served"
	}
	return ""
}

// checkWritable refuses a data directory on a read-only filesystem before
// anything else, with an error that says so.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".modgate-write-check-*")
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new data directory: init creates it
	}
	if err != nil {
		if errors.Is(err, syscall.EROFS) {
			return fmt.Errorf("data directory %s is on a read-only filesystem: "+
				"modgate writes its cache, spool and witness state there; mount it read-write", dir)
		}
		return fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
