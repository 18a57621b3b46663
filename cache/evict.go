package cache

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The bounded cache (Config.MaxSize).
//
// The store keeps an estimate of the bytes it holds: computed exactly by a
// scan at Open and by every eviction pass, raised by each Put and PutBlob
// (a replacement counts twice until the next pass; deletions are not
// subtracted). When the estimate passes MaxSize, a background pass runs:
//
//  1. flush the access times (see access.go);
//  2. count the bytes of every small value and blob on one snapshot, from
//     keys and manifests only (no value is read);
//  3. if the total is above MaxSize, walk the evictable objects again,
//     each with its access time, keeping in a max-heap only the oldest
//     objects whose sizes add up to the excess over the low-water mark
//     (evictLowWater × MaxSize), so the pass's memory grows with what it
//     evicts, not with the size of the cache;
//  4. delete those, least recently used first (each a Delete), then run
//     value log GC to give the disk space back.
//
// A pass costs two key-only scans of the LSM tree (O(n) in the number of
// objects, whose keys and manifests are small and mostly in the block
// cache), one access-record seek per evictable object, and O(k log k) heap
// work for the k objects evicted. Passes are at least minEvictGap apart, so
// the store may pass MaxSize by what is written in that gap. Blobs open for
// reading are not disturbed: they read their own snapshot.

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
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	st := EvictStats{}
	total, objects, err := s.totalSize(ctx, txn)
	if err != nil {
		return st, err
	}
	st.Objects, st.Before, st.After = objects, total, total
	if total > s.maxSize {
		excess := total - int64(float64(s.maxSize)*evictLowWater)
		victims, err := s.oldest(ctx, txn, excess)
		if err != nil {
			return st, err
		}
		n, bytes, err := s.deleteVictims(ctx, victims)
		st.Evicted, st.EvictedBytes, st.After = n, bytes, total-bytes
		if err != nil {
			s.size.Store(st.After)
			return st, fmt.Errorf("cache: evict: %w", err)
		}
	}
	s.size.Store(st.After)
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

// totalSize counts the bytes and objects of every small value and blob.
func (s *Store) totalSize(ctx context.Context, txn *badger.Txn) (total, objects int64, err error) {
	err = s.eachObject(ctx, txn, func(_ []byte, size int64) error {
		total += size
		objects++
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("cache: evict: %w", err)
	}
	return total, objects, nil
}

// eachObject calls fn with the caller key (valid only during the call) and
// size of every small value, then of every blob. Corrupt manifests count as
// empty.
func (s *Store) eachObject(ctx context.Context, txn *badger.Txn, fn func(key []byte, size int64) error) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixValue)
	it := txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return err
		}
		item := it.Item()
		if err := fn(item.Key()[len(prefixValue):], max(item.ValueSize()-valueHeaderLen, 0)); err != nil {
			it.Close()
			return err
		}
	}
	it.Close()
	return scanManifests(ctx, txn, "", func(key []byte, m manifest, _ error) error {
		return fn(key, m.size)
	})
}

// evictBatch is the number of objects deleted per transaction.
const evictBatch = 256

// deleteVictims deletes the victims, evictBatch per transaction (small
// value, blob manifest and access record of each, as Delete does), then
// the chunks of their blobs. It returns how many and how many bytes.
func (s *Store) deleteVictims(ctx context.Context, victims []victim) (int, int64, error) {
	var n int
	var size int64
	for len(victims) > 0 {
		batch := victims[:min(evictBatch, len(victims))]
		victims = victims[len(batch):]
		s.disk.preallocate()
		removals := make([]removal, len(batch))
		err := s.update(ctx, func(txn *badger.Txn) error {
			for i, v := range batch {
				var err error
				if removals[i], err = s.removeInTxn(txn, v.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return n, size, err
		}
		for i, v := range batch {
			s.removed(v.key, removals[i])
		}
		for _, v := range batch {
			n++
			size += v.size
		}
	}
	return n, size, nil
}

// victim is an evictable object with its last access time.
type victim struct {
	key    string
	size   int64
	access int64 // Unix nanoseconds; 0 if never recorded
}

// oldest returns the least recently used evictable objects whose sizes add
// up to at least excess (or all of them), oldest first.
func (s *Store) oldest(ctx context.Context, txn *badger.Txn, excess int64) ([]victim, error) {
	ac := newAccessCursor(txn)
	defer ac.close()
	h := &victimHeap{}
	var held int64
	err := s.eachObject(ctx, txn, func(key []byte, size int64) error {
		if !s.evictable(string(key)) {
			return nil
		}
		v := victim{key: string(key), size: size, access: ac.at(key)}
		heap.Push(h, v)
		held += size
		// Drop the newest while the others still cover the excess.
		for h.Len() > 0 && held-(*h)[0].size >= excess {
			held -= heap.Pop(h).(victim).size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: evict: %w", err)
	}
	out := make([]victim, h.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(h).(victim)
	}
	return out, nil
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

// victimHeap is a max-heap of victims by access time (newest on top).
type victimHeap []victim

func (h victimHeap) Len() int { return len(h) }
func (h victimHeap) Less(i, j int) bool {
	if h[i].access != h[j].access {
		return h[i].access > h[j].access
	}
	return h[i].key > h[j].key
}
func (h victimHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *victimHeap) Push(x any)   { *h = append(*h, x.(victim)) }
func (h *victimHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}

// grew adds n bytes to the size estimate and starts a pass if it passes
// MaxSize.
func (s *Store) grew(n int64) {
	if s.maxSize > 0 && s.size.Add(n) > s.maxSize {
		signal(s.evictNow)
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

// initSize counts the objects at Open (the incremental Stats, and the
// size estimate of a bounded store) and starts a pass if the store is
// already over MaxSize.
func (s *Store) initSize(ctx context.Context) error {
	st, err := s.scanStats(ctx)
	if err != nil {
		return err
	}
	s.stats.set(st)
	if s.maxSize <= 0 {
		return nil
	}
	s.size.Store(st.TotalBytes)
	if st.TotalBytes > s.maxSize {
		signal(s.evictNow)
	}
	return nil
}
