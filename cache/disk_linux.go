package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// diskChecks says whether free-space checks are implemented here.
const diskChecks = true

// statfs reports the space available to an unprivileged writer in the
// filesystem of dir.
func statfs(dir string) (fsStat, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fsStat{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fsStat{
		free:     int64(st.Bavail) * st.Bsize,
		total:    int64(st.Blocks) * st.Bsize,
		readOnly: st.Flags&unix.ST_RDONLY != 0,
	}, nil
}

// preallocator fallocates the newest value log file and write-ahead log
// file of a Badger directory, which Badger creates sparse (twice
// ValueLogFileSize and twice MemTableSize) and writes through a memory
// map. It finds new files by their names (Badger numbers them in order:
// %06d.vlog and %05d.mem), one stat per kind and call.
type preallocator struct {
	dir  string
	mu   sync.Mutex
	vlog int64 // fid of the newest value log file allocated
	mem  int64 // fid of the newest memtable file allocated
}

// newPreallocator returns a preallocator for dir, whose first ensure
// allocates the newest value log and memtable files there now.
func newPreallocator(dir string) (*preallocator, error) {
	p := &preallocator{dir: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if fid, ok := strings.CutSuffix(name, ".vlog"); ok {
			p.vlog = max(p.vlog, parseFid(fid)-1)
		}
		if fid, ok := strings.CutSuffix(name, ".mem"); ok {
			p.mem = max(p.mem, parseFid(fid)-1)
		}
	}
	return p, nil
}

func parseFid(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func (p *preallocator) vlogPath(fid int64) string {
	return filepath.Join(p.dir, fmt.Sprintf("%06d.vlog", fid))
}

func (p *preallocator) memPath(fid int64) string {
	return filepath.Join(p.dir, fmt.Sprintf("%05d.mem", fid))
}

// ensure allocates the value log and memtable files created since the
// last call. A nil *preallocator does nothing.
func (p *preallocator) ensure() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, kind := range []struct {
		fid  *int64
		path func(int64) string
	}{{&p.vlog, p.vlogPath}, {&p.mem, p.memPath}} {
		for {
			next := kind.path(*kind.fid + 1)
			if _, err := os.Stat(next); err != nil {
				break
			}
			if err := p.allocate(next); err != nil {
				return err
			}
			*kind.fid++
		}
	}
	return nil
}

// allocate gives every block of the file at path real storage, without
// changing its size. A file that is gone (value log GC, a flushed
// memtable) is not an error.
func (p *preallocator) allocate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("preallocating %s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	for {
		err = unix.Fallocate(int(f.Fd()), 0, 0, fi.Size())
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil // the filesystem cannot; admission alone protects it
	}
	if err != nil {
		return fmt.Errorf("preallocating %s (%d bytes): %w", filepath.Base(path), fi.Size(), err)
	}
	return nil
}

// checkWritable refuses a directory on a read-only filesystem, with an
// error that says so (Badger's own is obscure).
func checkWritable(dir string) error {
	st, err := statfs(dir)
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if st.readOnly {
		return fmt.Errorf("cache: %s is on a read-only filesystem: the cache needs a writable directory: %w", dir, unix.EROFS)
	}
	return nil
}
