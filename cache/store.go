// Package cache is the Badger store of verified objects for modgate.
//
// It holds two kinds of values under caller-chosen string keys of the form
// "<kind>/<rest>" (for example "zip/example.com/!upper/@v/v1.0.0.zip" or
// "sumdb/sum.golang.org/tile/8/0/001"):
//
//   - small values (Get, Put, CompareAndSwap, Scan), stored whole together
//     with the time they were stored;
//   - blobs (PutBlob, OpenBlob), large values such as module zips, stored in
//     chunks and never held whole in memory. A blob becomes visible only when
//     its manifest is committed, so readers never see a partial blob.
//
// Small values and blobs live in separate namespaces: the same key may hold
// one of each, and Delete removes both.
//
// Internal layout of Badger keys (callers never see these):
//
//	v/<key>                 small value: 1 format byte, 8 bytes stored time
//	                        (Unix nanoseconds, big endian), the value
//	b/<key>                 blob manifest (size, chunk size, chunk count,
//	                        generation, stored time, SHA-256 of the content)
//	c/<gen:8><index:4>      blob chunk (generation and index big endian)
//	a/<key>                 last access of an evictable object (Unix
//	                        nanoseconds, big endian) and its size; only
//	                        with MaxSize (index.go)
//	t/<access:8><key>       the access-order index: its size (index.go)
//	m/access-index          marker of a complete access-order index
//
// Every caller key is stored behind a "v/" or "b/" prefix, so no caller key
// can collide with a chunk key or with a key of the other namespace.
//
// Choices made here:
//
//   - Each PutBlob writes under a fresh generation (an id above every one
//     seen in the database, starting from the clock), so a blob being
//     replaced and its replacement never share chunks. A crash before the
//     manifest commit leaves chunks of a generation no manifest names;
//     Sweep (run by Open) deletes those, sparing PutBlob calls in progress.
//   - Chunks are fsynced before their manifest is committed, so a manifest
//     never outlives its chunks, even across a power failure.
//   - Readers check each chunk's presence and length against the manifest,
//     and a read in order from the start checks the content's SHA-256
//     before handing out the last chunk, so corrupt data ends in an error,
//     never in a complete-looking file.
//   - Corrupt records are reported (ErrCorrupt) but never stop Open, Sweep
//     or Stats; they can be replaced or deleted.
//   - Value log garbage collection runs in the background (GCInterval) to
//     reclaim the disk space of deleted and replaced blobs.
//   - With Config.MaxSize, the least recently used evictable objects are
//     deleted when the store passes that size (evict.go); reads record
//     their access in memory only, flushed in batches (access.go).
package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrNotFound is returned when a key holds no value (or no blob).
var ErrNotFound = errors.New("cache: not found")

// ErrConflict is returned by CompareAndSwap when the stored value is not the
// expected one.
var ErrConflict = errors.New("cache: compare-and-swap conflict")

// ErrSizeMismatch is returned by PutBlob when the reader yields a different
// number of bytes than declared.
var ErrSizeMismatch = errors.New("cache: blob size mismatch")

// ErrInvalidKey is returned for an empty key, a key containing a NUL byte or
// a key longer than MaxKeyLen.
var ErrInvalidKey = errors.New("cache: invalid key")

// ErrCorrupt is returned when stored data fails a consistency check: a missing
// or wrongly sized chunk, a content hash that does not match the manifest, or
// an undecodable record.
var ErrCorrupt = errors.New("cache: corrupt data")

// ErrInvalidConfig is returned by Open when the Config cannot be used.
var ErrInvalidConfig = errors.New("cache: invalid config")

// MaxKeyLen is the longest key the store accepts, in bytes.
const MaxKeyLen = 8 << 10

// Defaults for the zero values of Config; see Config for their memory cost.
const (
	// DefaultChunkSize is the default blob chunk size.
	DefaultChunkSize = 1 << 20
	// DefaultMemTableSize is the default size of a Badger memtable.
	DefaultMemTableSize = 16 << 20
	// DefaultNumMemtables is the default number of memtables waiting for a flush.
	DefaultNumMemtables = 1
	// DefaultBlockCacheSize is the default size of Badger's block cache.
	DefaultBlockCacheSize = 8 << 20
	// DefaultIndexCacheSize is the default bound of Badger's index cache:
	// the table indexes and bloom filters of a cache of a million objects
	// (about 10 MiB) fit, so a read does not decode an index again.
	DefaultIndexCacheSize = 32 << 20
	// DefaultNumCompactors is the default number of compaction goroutines.
	DefaultNumCompactors = 2
	// DefaultValueLogFileSize is the default size of a value log file.
	DefaultValueLogFileSize = 64 << 20
	// DefaultValueThreshold is the default length from which values are kept
	// in the value log: sumdb tiles (8 KiB) and chunks go there, keys,
	// manifests, .info and most .mod files stay in the LSM tree.
	DefaultValueThreshold = 4 << 10
	// DefaultGCInterval is the default interval of value log GC.
	DefaultGCInterval = 10 * time.Minute
)

// MaxChunkSize is the largest ChunkSize accepted for an on-disk store.
// An in-memory store accepts at most 1 MiB (Badger keeps every value of an
// in-memory database in its LSM tree).
const MaxChunkSize = 16 << 20

const (
	// memValueThreshold is Badger's maximum; an in-memory store must keep
	// every value (chunks included) under it.
	memValueThreshold = 1 << 20
	// maxRetries bounds the retries of a transaction that lost a Badger
	// conflict to a concurrent writer.
	maxRetries = 16
)

// Config configures a Store. Zero values mean the defaults.
//
// Memory cost of the defaults, chosen so that the whole modgate process idles
// well under 100 MiB RSS (measured: after writing 600 MiB of blobs and
// 20,000 values of 8 KiB, the Go heap in use is ~22 MiB, the heap obtained
// from the OS peaks at ~56 MiB, anonymous RSS is ~18 MiB once idle):
//
//   - memtables: MemTableSize 16 MiB, NumMemtables 1. A memtable's skiplist
//     arena is its size plus 15% batch headroom (~21 MiB); there is one
//     mutable memtable plus at most one waiting for its flush, so ~42 MiB at
//     worst while writes outrun flushes. Arena pages are touched only as
//     entries arrive, and only keys, manifests and values under
//     ValueThreshold (4 KiB) enter a memtable: blob chunks and tiles go to
//     the value log and never fill the LSM tree.
//   - block cache 8 MiB and index cache up to 32 MiB (bounded ristretto
//     caches; compression is off, since zips and tiles do not compress).
//     The index cache holds what the tables' indexes and bloom filters
//     take: under 1 MiB for 10,000 objects, about 10 MiB for a million.
//   - 2 compactors; while one runs, its table builder holds about one table
//     (2 MiB base tables; a memtable's worth for an L0 flush).
//   - value log files of 64 MiB. Badger memory-maps them (and its tables)
//     and offers no option not to, so pages recently written or read show
//     up as file-backed resident memory (RssFile): page cache that the
//     kernel reclaims under pressure, not heap.
//   - one ChunkSize buffer (1 MiB) per PutBlob in progress and per open
//     Blob that has been read, recycled through a pool.
//   - the pages of blob chunks in the mapped value log are dropped from the
//     resident set as soon as a chunk is written or copied out (see
//     dropPages), so serving or storing a zip of any size adds about one
//     chunk, not the zip, to RssFile.
type Config struct {
	// Dir is the Badger directory. Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory (for tests). ChunkSize must then be
	// at most 1 MiB.
	InMemory bool
	// Logger receives the store's and Badger's logs. Nil means zap.NewNop().
	Logger *zap.Logger
	// ChunkSize is the blob chunk size. 0 means DefaultChunkSize (1 MiB).
	// Existing blobs keep the chunk size they were written with.
	ChunkSize int

	// MemTableSize is the size of a Badger memtable. 0 means 16 MiB.
	MemTableSize int64
	// NumMemtables is how many immutable memtables may wait for a flush
	// before writes stall. 0 means 1.
	NumMemtables int
	// BlockCacheSize bounds Badger's block cache. 0 means 8 MiB; negative
	// disables the cache.
	BlockCacheSize int64
	// IndexCacheSize bounds Badger's table index and bloom filter cache.
	// 0 means 32 MiB; negative keeps every index in memory, unbounded.
	IndexCacheSize int64
	// NumCompactors is the number of compaction goroutines. 0 means 2.
	NumCompactors int
	// ValueLogFileSize is the size of a value log file. 0 means 64 MiB.
	ValueLogFileSize int64
	// ValueThreshold: values at least this long are kept in the value log,
	// shorter ones in the LSM tree. 0 means DefaultValueThreshold. Unused
	// when InMemory (everything stays in the LSM tree).
	ValueThreshold int64
	// GCInterval is how often value log garbage collection runs in the
	// background (reclaiming the disk space of deleted or replaced blobs).
	// 0 means 10 minutes; negative disables it. Unused when InMemory.
	GCInterval time.Duration
	// Now returns the current time, recorded as the stored time of values.
	// Nil means time.Now.
	Now func() time.Time

	// MaxSize bounds the bytes stored (values and blob contents as callers
	// gave them; Badger's own overhead and value log garbage come on top).
	// Past it, the least recently used evictable objects are deleted down
	// to 90% of MaxSize and value log GC runs. 0 means unbounded (and no
	// access tracking at all).
	MaxSize int64
	// Evictable reports whether the object under key may be evicted. Nil
	// means DefaultEvictable (zip, mod, info and sumdb keys; never
	// witness/ or audit/). It must be fast and safe for concurrent use.
	Evictable func(key string) bool
	// AccessFlushInterval is how often the access times noted by reads
	// are written to disk when MaxSize is set. 0 means 30 seconds.
	AccessFlushInterval time.Duration
	// ManualEviction turns the background eviction off: only Evict
	// evicts. For tests and tools that choose when a pass runs.
	ManualEviction bool
	// KeepPagesResident turns off the dropping of blob chunks' pages from
	// the resident set after each chunk is written or read (Linux only; see
	// dropPages). With it, RSS grows by every blob byte served, as page
	// cache that the kernel reclaims only under memory pressure.
	KeepPagesResident bool

	// MinFree is the free space that stores of objects (blobs and
	// evictable values) must leave on the filesystem of Dir, on top of the
	// reserve that Badger needs for its own growth (see disk.go). Below it
	// they fail with a *DiskFullError and write nothing; what is stored
	// stays readable, and stores resume by themselves once space returns.
	// The zero value means DefaultMinFree (the larger of 1 GiB and 5%).
	// Checked on Linux only; unused when InMemory.
	MinFree FreeSpace

	// noAdmission and noPrealloc turn off the two measures against writing
	// into a full disk, for the tests that measure which one prevents the
	// fault (TestDiskFullNeverFaults).
	noAdmission, noPrealloc bool
}

// Store is a Badger store of small values and chunked blobs. It is safe for
// concurrent use.
type Store struct {
	db        *badger.DB
	log       *zap.Logger
	chunkSize int
	inMemory  bool
	now       func() time.Time
	bufs      sync.Pool // *[]byte of chunkSize capacity

	mu       sync.Mutex
	nextGen  uint64              // next blob generation id
	inflight map[uint64]struct{} // generations of PutBlob calls in progress

	valueThreshold int64
	trimPages      bool // see dropPages

	maxSize   int64
	evictable func(string) bool
	evictMu   sync.Mutex // one eviction pass at a time
	evictNow  chan struct{}
	flushNow  chan struct{}
	accessMu  sync.Mutex
	access    map[string]int64 // key → Unix nanoseconds of its last read, not yet flushed

	disk       *diskGuard // nil: no free-space checks (in memory, or not Linux)
	stats      statsCounter
	statsSaved bool // Open took the counts saved by Close (statsnap.go)

	indexMarked atomic.Bool         // unbounded, and the index's marker is still stored (index.go)
	indexMu     sync.Mutex          // one drop of the marker
	indexBuilt  bool                // Open built the index
	evictHook   func(*evictScratch) // tests: called by each eviction batch between its reads and its deletions

	cancel    context.CancelFunc // stops background work
	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store described by cfg and deletes the
// chunks of any blob whose write never completed (see Sweep).
func Open(ctx context.Context, cfg Config) (*Store, error) {
	start := time.Now()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger.Named("cache")
	if !cfg.InMemory {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		if err := checkWritable(cfg.Dir); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(cfg.badgerOptions(log.Named("badger")))
	if err != nil {
		return nil, fmt.Errorf("cache: open %q: %w", cfg.Dir, err)
	}
	disk, err := newDiskGuard(cfg)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s := &Store{
		db:             db,
		log:            log,
		chunkSize:      cfg.ChunkSize,
		inMemory:       cfg.InMemory,
		now:            cfg.Now,
		inflight:       make(map[uint64]struct{}),
		valueThreshold: cfg.ValueThreshold,
		trimPages:      !cfg.KeepPagesResident,
		maxSize:        cfg.MaxSize,
		evictable:      cfg.Evictable,
		evictNow:       make(chan struct{}, 1),
		flushNow:       make(chan struct{}, 1),
		access:         make(map[string]int64),
		disk:           disk,
	}
	saved, savedOK := s.loadStats() // before Open writes anything (statsnap.go)
	maxGen, err := s.sweep(ctx)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.nextGen = max(uint64(time.Now().UnixNano()), maxGen+1)
	if err := s.prepareIndex(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.initStats(ctx, saved, savedOK); err != nil {
		_ = db.Close()
		return nil, err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if !cfg.InMemory && cfg.GCInterval > 0 {
		s.done.Add(1)
		go s.gcLoop(bg, cfg.GCInterval)
	}
	if cfg.MaxSize > 0 {
		s.done.Add(1)
		go s.accessLoop(bg, cfg.AccessFlushInterval)
	}
	if cfg.MaxSize > 0 && !cfg.ManualEviction {
		s.done.Add(1)
		go s.evictLoop(bg)
	}
	objects, bytes := s.stats.totals()
	log.Info("cache opened", zap.Int64("objects", objects), zap.Int64("bytes", bytes),
		zap.Duration("duration", time.Since(start)))
	return s, nil
}

// Close stops background work and closes the database. Every Blob must be
// closed before. Calling Close again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.done.Wait()
		if err := s.FlushAccess(context.Background()); err != nil {
			s.log.Warn("flushing access times on close", zap.Error(err))
		}
		s.saveStats()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("cache: close: %w", err)
		}
	})
	return s.closeErr
}

// ErrCloseAbandoned is returned by CloseContext when the database did not
// close in time.
var ErrCloseAbandoned = errors.New("cache: close abandoned")

// CloseContext is Close bounded by ctx. If the database has not closed
// when ctx is done (a disk that fails or was removed keeps Badger retrying
// its memtable flush forever), it returns ErrCloseAbandoned with what was
// abandoned, and leaves the close running for the process to end. What
// the store acknowledged is in Badger's write-ahead log and value log
// (chunks of blobs are synced before their manifest commits), which the
// next Open replays; blob writes in progress are swept as orphans.
func (s *Store) CloseContext(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.mu.Lock()
	blobs := len(s.inflight)
	s.mu.Unlock()
	s.accessMu.Lock()
	access := len(s.access)
	s.accessMu.Unlock()
	return fmt.Errorf("%w (%w): %d blob writes in progress, %d access times unwritten, "+
		"the memtable flush and table sync unfinished; the next start replays the write-ahead log",
		ErrCloseAbandoned, ctx.Err(), blobs, access)
}

// withDefaults fills in the zero values of c and checks the result.
func (c Config) withDefaults() (Config, error) {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Evictable == nil {
		c.Evictable = DefaultEvictable
	}
	setDefault(&c.AccessFlushInterval, DefaultAccessFlushInterval)
	setDefault(&c.ChunkSize, DefaultChunkSize)
	setDefault(&c.MemTableSize, DefaultMemTableSize)
	setDefault(&c.NumMemtables, DefaultNumMemtables)
	setDefault(&c.BlockCacheSize, DefaultBlockCacheSize)
	setDefault(&c.IndexCacheSize, DefaultIndexCacheSize)
	setDefault(&c.NumCompactors, DefaultNumCompactors)
	setDefault(&c.ValueLogFileSize, DefaultValueLogFileSize)
	setDefault(&c.ValueThreshold, DefaultValueThreshold)
	setDefault(&c.GCInterval, DefaultGCInterval)
	if c.MinFree == (FreeSpace{}) {
		c.MinFree = DefaultMinFree
	}
	return c, c.check()
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

func (c Config) check() error {
	maxChunk := MaxChunkSize
	if c.InMemory {
		maxChunk = memValueThreshold
	}
	switch {
	case !c.InMemory && c.Dir == "":
		return fmt.Errorf("%w: Dir is required unless InMemory", ErrInvalidConfig)
	case c.ChunkSize < 0 || c.ChunkSize > maxChunk:
		return fmt.Errorf("%w: ChunkSize %d not in (0, %d]", ErrInvalidConfig, c.ChunkSize, maxChunk)
	case c.MemTableSize < 8<<20:
		return fmt.Errorf("%w: MemTableSize %d below 8 MiB", ErrInvalidConfig, c.MemTableSize)
	case c.NumMemtables < 0 || c.NumCompactors < 0 || c.NumCompactors == 1:
		return fmt.Errorf("%w: NumMemtables must be positive, NumCompactors at least 2", ErrInvalidConfig)
	case c.ValueLogFileSize < 1<<20 || c.ValueLogFileSize >= 2<<30:
		return fmt.Errorf("%w: ValueLogFileSize %d not in [1 MiB, 2 GiB)", ErrInvalidConfig, c.ValueLogFileSize)
	case c.ValueThreshold < 0 || c.ValueThreshold > memValueThreshold:
		return fmt.Errorf("%w: ValueThreshold %d not in (0, 1 MiB]", ErrInvalidConfig, c.ValueThreshold)
	case c.MaxSize < 0 || c.AccessFlushInterval < 0:
		return fmt.Errorf("%w: MaxSize and AccessFlushInterval must not be negative", ErrInvalidConfig)
	case int64(c.ChunkSize) > c.ValueLogFileSize/2:
		return fmt.Errorf("%w: ChunkSize %d above half of ValueLogFileSize", ErrInvalidConfig, c.ChunkSize)
	}
	return c.MinFree.check()
}

// badgerOptions turns a checked Config into Badger options.
func (c Config) badgerOptions(log *zap.Logger) badger.Options {
	dir, threshold := c.Dir, c.ValueThreshold
	if c.InMemory {
		dir, threshold = "", memValueThreshold
	}
	return badger.DefaultOptions(dir).
		WithInMemory(c.InMemory).
		WithLogger(badgerLogger{log: log}).
		WithMetricsEnabled(false).
		WithCompression(options.None).
		WithMemTableSize(c.MemTableSize).
		WithNumMemtables(c.NumMemtables).
		WithBlockCacheSize(max(c.BlockCacheSize, 0)).
		WithIndexCacheSize(max(c.IndexCacheSize, 0)).
		WithNumCompactors(c.NumCompactors).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithValueThreshold(threshold).
		// Read errors are detected, never served: the CRC of every value
		// read from the value log, and of every table block read.
		WithVerifyValueChecksum(true).
		WithChecksumVerificationMode(options.OnBlockRead)
}

// badgerLogger sends Badger's logs to zap: errors at error level, warnings at
// warn level, and Badger's chatty info and debug lines at debug level.
type badgerLogger struct{ log *zap.Logger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.write(zap.ErrorLevel, f, a) }
func (l badgerLogger) Warningf(f string, a ...any) { l.write(zap.WarnLevel, f, a) }
func (l badgerLogger) Infof(f string, a ...any)    { l.write(zap.DebugLevel, f, a) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.write(zap.DebugLevel, f, a) }

func (l badgerLogger) write(lvl zapcore.Level, f string, a []any) {
	if !l.log.Core().Enabled(lvl) {
		return
	}
	l.log.Log(lvl, strings.TrimSpace(fmt.Sprintf(f, a...)))
}
