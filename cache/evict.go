package cache

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The bounded cache (Config.MaxSize).
//
// The store counts the bytes it holds incrementally (Stats, stats.go).
// When a write makes the count pass MaxSize, a background pass runs:
//
//  1. flush the access times (see access.go), which moves the records of
//     the access-order index (index.go);
//  2. if the store holds more than MaxSize, read the index from its start,
//     least recently used first, until the objects read add up to the
//     excess over the low-water mark (evictLowWater × MaxSize);
//  3. delete those, evictBatch per transaction, in the transaction that
//     read their index records, so that one moved since (the object was
//     read, replaced or deleted) makes the batch run again on a fresh
//     snapshot (evictbatch.go); then run value log GC to give the disk
//     space back.
//
// A pass reads O(evicted) index records and writes O(evicted) deletes,
// each O(log n) in Badger's LSM tree: its cost and memory grow with what
// it evicts, not with the size of the cache. Passes are at
// least minEvictGap apart, so the store may pass MaxSize by what is
// written in that gap. Blobs open for reading are not disturbed: they read
// their own snapshot.

const (
	// evictLowWater is the fraction of MaxSize an eviction pass brings the
	// cache down to, so that passes do not follow every write.
	evictLowWater = 0.9
	// minEvictGap is the shortest time between two background passes.
	minEvictGap = 5 * time.Second
)

// EvictStats reports one eviction pass.
type EvictStats struct {
	Objects      int64         // small values and blobs counted
	Before       int64         // bytes stored before the pass
	After        int64         // bytes stored after the pass
	Evicted      int           // objects deleted
	EvictedBytes int64         // their bytes
	Duration     time.Duration // time the pass took, GC included
}

// Evict runs one eviction pass now: if the store holds more than
// Config.MaxSize bytes, it deletes the least recently used evictable
// objects until it holds at most 90% of MaxSize, then runs value log GC.
// It does nothing for an unbounded store (MaxSize 0). The background loop
// calls it when writes pass the limit; tests and operators may call it too.
func (s *Store) Evict(ctx context.Context) (EvictStats, error) {
	if s.maxSize <= 0 {
		return EvictStats{}, nil
	}
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	start := time.Now()
	if err := s.FlushAccess(ctx); err != nil {
		return EvictStats{}, err
	}
	st := EvictStats{}
	st.Objects, st.Before = s.stats.totals()
	st.After = st.Before
	if st.Before > s.maxSize {
		excess := st.Before - int64(float64(s.maxSize)*evictLowWater)
		n, bytes, err := s.evictOldest(ctx, excess)
		st.Evicted, st.EvictedBytes, st.After = n, bytes, st.Before-bytes
		if err != nil {
			return st, fmt.Errorf("cache: evict: %w", err)
		}
	}
	if st.After > s.maxSize {
		s.log.Warn("cache is over its maximum size but holds nothing more to evict",
			zap.Int64("bytes", st.After), zap.Int64("max_size", s.maxSize))
	}
	if st.Evicted > 0 {
		if err := s.RunGC(ctx); err != nil {
			return st, err
		}
	}
	st.Duration = time.Since(start)
	return st, nil
}

// accessCursor reads access records in key order, alongside a walk of
// the objects in key order (a merge join: no seek per object).
type accessCursor struct {
	it   *badger.Iterator
	last []byte
}

func newAccessCursor(txn *badger.Txn) *accessCursor {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixAccess)
	c := &accessCursor{it: txn.NewIterator(opts)}
	c.it.Rewind()
	return c
}

func (c *accessCursor) close() { c.it.Close() }

// at returns the access time of key (0 if it has none). Keys must come in
// increasing order; a smaller key than the last one starts over (the walk
// goes over small values, then over blobs).
func (c *accessCursor) at(key []byte) int64 {
	if bytes.Compare(key, c.last) < 0 {
		c.it.Rewind()
	}
	c.last = append(c.last[:0], key...)
	for ; c.it.Valid(); c.it.Next() {
		k := c.it.Item().Key()[len(prefixAccess):]
		switch bytes.Compare(k, key) {
		case -1:
			continue
		case 0:
			var t int64
			_ = c.it.Item().Value(func(b []byte) error { t = decodeAccess(b); return nil })
			return t
		}
		return 0
	}
	return 0
}

// grew starts a pass if the store now holds more than MaxSize.
func (s *Store) grew() {
	if s.maxSize > 0 {
		if _, total := s.stats.totals(); total > s.maxSize {
			signal(s.evictNow)
		}
	}
}

// evictLoop runs a pass when asked, at most once per minEvictGap, until
// ctx is done.
func (s *Store) evictLoop(ctx context.Context) {
	defer s.done.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.evictNow:
		}
		st, err := s.Evict(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("evicting", zap.Error(err))
		case st.Evicted > 0:
			s.log.Info("evicted least recently used objects", zap.Int("objects", st.Evicted),
				zap.Int64("bytes", st.EvictedBytes), zap.Int64("before", st.Before),
				zap.Int64("after", st.After), zap.Duration("duration", st.Duration))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(minEvictGap):
		}
	}
}
