package cache

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dustin/go-humanize"
)

// Disk space (Config.MinFree).
//
// Badger writes its value log, its write-ahead log (memtable files) and its
// tables through memory maps of files that start sparse. Writing into a
// hole of such a file when the filesystem has no free block is a SIGBUS
// that kills the process, not an error. Two measures keep the store from
// ever writing into a full disk:
//
//  1. Admission (admit): before every store, statfs must show room for
//     what Badger will write (the value bytes, plus the bytes of the blobs
//     being stored concurrently) and for a reserve (one new value log file,
//     preallocated, and the write-ahead log, memtable flush and compaction
//     growth those bytes cause), and, for objects, the MinFree floor on top.
//     A refused store returns a *DiskFullError (errors.Is ErrDiskFull) and
//     writes nothing. Blob chunks are admitted one by one as well, so a
//     disk that fills up under a running PutBlob ends it with an error.
//  2. Preallocation (preallocator, Linux): the active value log file and
//     write-ahead log file are fallocated as soon as Badger creates them,
//     so that writes into them land on allocated blocks; a disk that fills
//     up after admission fails the fallocate (an error) instead of a write
//     into a hole (a SIGBUS).
//
// The measurements that led to both are in the cache tests
// (TestDiskFullNeverFaults) and in SECURITY.md.

// ErrDiskFull is matched (errors.Is) by every *DiskFullError.
var ErrDiskFull = errors.New("cache disk full")

// DiskFullError reports a store refused because the cache's filesystem is
// short of space, read-only or cannot be checked. Nothing was stored.
type DiskFullError struct {
	What   string // what was being stored
	Reason string // why it was refused
	Err    error  // the underlying error, if any
}

func (e *DiskFullError) Error() string {
	msg := "cache disk full: " + e.What
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is ErrDiskFull.
func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// Unwrap returns the underlying error.
func (e *DiskFullError) Unwrap() error { return e.Err }

// FreeSpace is an amount of free space to keep: Bytes or Percent of the
// filesystem's size, whichever is larger. The zero value means
// DefaultMinFree.
type FreeSpace struct {
	Bytes   int64
	Percent float64
}

// DefaultMinFree is the default Config.MinFree: the larger of 1 GiB and 5%.
var DefaultMinFree = FreeSpace{Bytes: 1 << 30, Percent: 5}

// Of returns the bytes to keep free on a filesystem of total bytes.
func (f FreeSpace) Of(total int64) int64 {
	return max(f.Bytes, int64(float64(total)*f.Percent/100))
}

// String formats f as "1 GiB", "5%" or "the larger of 1 GiB and 5%".
func (f FreeSpace) String() string {
	b := humanize.IBytes(uint64(max(f.Bytes, 0)))
	switch {
	case f.Percent == 0:
		return b
	case f.Bytes == 0:
		return fmt.Sprintf("%g%%", f.Percent)
	}
	return fmt.Sprintf("the larger of %s and %g%%", b, f.Percent)
}

func (f FreeSpace) check() error {
	if f.Bytes < 0 || f.Percent < 0 || f.Percent >= 100 {
		return fmt.Errorf("%w: MinFree %s: bytes must not be negative, percent in [0, 100)", ErrInvalidConfig, f)
	}
	return nil
}

// Space describes the free space of the store's filesystem, as statfs saw
// it at the call.
type Space struct {
	Checked  bool  // false for a store without free-space checks (in memory, not Linux)
	Free     int64 // bytes available to the store
	Total    int64 // size of the filesystem
	Floor    int64 // Config.MinFree for this filesystem
	Reserve  int64 // bytes kept for Badger's own growth (see disk.go)
	Pending  int64 // bytes of blobs being stored, not written yet
	ReadOnly bool
	Err      error // statfs failed (Free and Total are then 0)
	Refused  int64 // stores refused for lack of space since Open
}

// Full returns why new objects are refused now, or "" if they are
// admitted (at least one byte of them).
func (sp Space) Full() string {
	switch {
	case !sp.Checked:
		return ""
	case sp.Err != nil:
		return fmt.Sprintf("cannot check free space: %v", sp.Err)
	case sp.ReadOnly:
		return "the filesystem is read-only"
	case sp.Free-sp.Pending-sp.Reserve <= sp.Floor:
		return fmt.Sprintf("%s free, below the %s that Badger needs plus the %s to keep free (--min-free)",
			humanize.IBytes(uint64(max(sp.Free, 0))), humanize.IBytes(uint64(sp.Reserve)), humanize.IBytes(uint64(sp.Floor)))
	}
	return ""
}

// diskGuard keeps the space accounting of a store on disk. A nil
// *diskGuard (an in-memory store) admits everything.
type diskGuard struct {
	dir      string
	minFree  FreeSpace
	reserve  int64
	pending  atomic.Int64 // bytes of PutBlob calls in progress, not yet written
	refused  atomic.Int64
	prealloc *preallocator // nil where unsupported or disabled
	statfs   func(dir string) (fsStat, error)
	mu       sync.Mutex // serializes admissions, so two cannot both take the last bytes
}

// fsStat is what statfs reports.
type fsStat struct {
	free, total int64
	readOnly    bool
}

// reserveFor is the room kept for Badger's own growth: one new value log
// file, preallocated at twice ValueLogFileSize as Badger sizes it, and four
// memtables' worth for the write-ahead log file (preallocated at twice
// MemTableSize), the L0 table of a memtable flush and compaction output.
func reserveFor(c Config) int64 {
	return 2*c.ValueLogFileSize + 4*c.MemTableSize
}

// space returns the current Space.
func (g *diskGuard) space() Space {
	if g == nil {
		return Space{}
	}
	sp := Space{Checked: true, Reserve: g.reserve, Pending: g.pending.Load(), Refused: g.refused.Load()}
	st, err := g.statfs(g.dir)
	if err != nil {
		sp.Err = err
		return sp
	}
	sp.Free, sp.Total, sp.ReadOnly = st.free, st.total, st.readOnly
	sp.Floor = g.minFree.Of(st.total)
	return sp
}

// admit checks that n more bytes (for what) can be written; object says
// whether the MinFree floor applies (it does not for the store's own
// small state records, see Store.floorApplies). It also preallocates
// value log and write-ahead log files that Badger created since the last
// call. A refusal is counted and returned as a *DiskFullError.
func (g *diskGuard) admit(what string, n int64, object bool) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.prealloc.ensure(); err != nil {
		return g.refuse(what, "preallocating Badger's files", err)
	}
	sp := g.space()
	switch {
	case sp.Err != nil:
		return g.refuse(what, "cannot check free space", sp.Err)
	case sp.ReadOnly:
		return g.refuse(what, "the filesystem of "+g.dir+" is read-only", nil)
	}
	floor := int64(0)
	if object {
		floor = sp.Floor
	}
	if left := sp.Free - sp.Pending - n - sp.Reserve; left < floor {
		return g.refuse(what, shortage(sp, n, floor), nil)
	}
	return nil
}

// shortage says why n bytes do not fit in sp with floor bytes kept free.
func shortage(sp Space, n, floor int64) string {
	b := func(v int64) string { return humanize.IBytes(uint64(max(v, 0))) }
	msg := fmt.Sprintf("only %s free; it needs %s, plus %s kept for Badger", b(sp.Free), b(n), b(sp.Reserve))
	if sp.Pending > 0 {
		msg += fmt.Sprintf(", plus %s of stores in progress", b(sp.Pending))
	}
	if floor > 0 {
		msg += fmt.Sprintf(", and %s must stay free (--min-free)", b(floor))
	}
	return msg
}

// preallocate allocates the Badger files created since the last call, for
// writes that are not admitted (deletions, access times), which free space
// or are tiny. A failure is left to the next admission to report.
func (g *diskGuard) preallocate() {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.prealloc.ensure()
}

// roomForRewrite checks, without counting a refusal, that Badger's
// reserve is free for a value log rewrite (garbage collection).
func (g *diskGuard) roomForRewrite() error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.prealloc.ensure(); err != nil {
		return &DiskFullError{What: "rewriting a value log file", Reason: "preallocating Badger's files", Err: err}
	}
	sp := g.space()
	if why := sp.Full(); sp.Err != nil || sp.ReadOnly || sp.Free-sp.Pending < sp.Reserve {
		return &DiskFullError{What: "rewriting a value log file", Reason: why}
	}
	return nil
}

func (g *diskGuard) refuse(what, reason string, err error) error {
	g.refused.Add(1)
	return &DiskFullError{What: what, Reason: reason, Err: err}
}

// classify turns a failed Badger write into a *DiskFullError when the
// filesystem is full or read-only now (Badger's errors do not keep the
// errno), so callers see why; other errors are returned unchanged.
func (g *diskGuard) classify(what string, err error) error {
	if g == nil || err == nil || errors.Is(err, ErrDiskFull) {
		return err
	}
	sp := g.space()
	if sp.Err == nil && !sp.ReadOnly && sp.Free > sp.Reserve {
		return err
	}
	reason := "the write failed with the filesystem full"
	if sp.ReadOnly {
		reason = "the write failed with the filesystem read-only"
	}
	return g.refuse(what, reason, err)
}

// Space reports the free space of the store's filesystem now (one statfs
// call) and how many stores it refused; zero for an in-memory store.
func (s *Store) Space() Space { return s.disk.space() }

// floorApplies reports whether the MinFree floor applies to a store under
// key: to blobs and evictable objects always, not to the store's other
// small records (witness state, audit records, list and @latest answers),
// which may go on being written down to the reserve, so that the witness
// can still move forward on a full disk.
func (s *Store) floorApplies(key string) bool { return s.evictable(key) }

// describe names a store for messages: the key, and the size if known.
func describe(key string, n int64) string {
	if n < 0 {
		return "storing " + key
	}
	return fmt.Sprintf("storing %s (%s)", key, humanize.IBytes(uint64(n)))
}

// newDiskGuard returns the space accounting for an on-disk store opened
// with cfg (Badger's files already created), or nil for an in-memory one
// or where statfs is not implemented.
func newDiskGuard(cfg Config) (*diskGuard, error) {
	if cfg.InMemory || !diskChecks {
		return nil, nil
	}
	g := &diskGuard{dir: cfg.Dir, minFree: cfg.MinFree, reserve: reserveFor(cfg), statfs: statfs}
	if cfg.noAdmission {
		g.statfs = func(string) (fsStat, error) { return fsStat{free: 1 << 62, total: 1 << 62}, nil }
	}
	if !cfg.noPrealloc {
		p, err := newPreallocator(cfg.Dir)
		if err != nil {
			return nil, &DiskFullError{What: "opening the cache", Reason: "preallocating Badger's files", Err: err}
		}
		g.prealloc = p
	}
	return g, nil
}

// pendingBytes are the bytes of one PutBlob not yet written, counted in
// diskGuard.pending.
type pendingBytes struct {
	g    *diskGuard
	left int64 // bytes still counted; 0 for a blob of unknown size
}

// hold counts the size bytes of a blob about to be written as pending
// (nothing for an unknown size, negative).
func (g *diskGuard) hold(size int64) *pendingBytes {
	p := &pendingBytes{g: g, left: max(size, 0)}
	if g != nil {
		g.pending.Add(p.left)
	}
	return p
}

// admit checks that a chunk of n bytes can be written now: its bytes are
// already pending if the blob's size was known.
func (p *pendingBytes) admit(what string, n int64) error {
	if p.left >= n {
		n = 0
	}
	return p.g.admit(what, n, false)
}

// wrote stops counting n written bytes as pending.
func (p *pendingBytes) wrote(n int64) {
	n = min(n, p.left)
	p.left -= n
	if p.g != nil {
		p.g.pending.Add(-n)
	}
}

// release stops counting the rest.
func (p *pendingBytes) release() { p.wrote(p.left) }

// withStatfs returns a copy of g (sharing its counters' current values)
// that calls fn for statfs; for tests that simulate other writers.
func (g *diskGuard) withStatfs(fn func(string) (fsStat, error)) *diskGuard {
	c := &diskGuard{dir: g.dir, minFree: g.minFree, reserve: g.reserve, prealloc: g.prealloc, statfs: fn}
	c.pending.Store(g.pending.Load())
	c.refused.Store(g.refused.Load())
	return c
}
