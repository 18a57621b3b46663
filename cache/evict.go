package cache

import (
	"bytes"
	"context"
	"errors"
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
//  3. delete those, evictBatch per transaction, each only if its access
//     record still says what the index said (an object read since the
//     snapshot stays), then run value log GC to give the disk space back.
//
// A pass reads O(evicted) index records and makes O(evicted) point reads
// and deletes, each O(log n) in Badger's LSM tree: its cost and memory
// grow with what it evicts, not with the size of the cache. Passes are at
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

// evictBatch is the number of objects deleted per transaction.
const evictBatch = 512

// victim is an evictable object as the index listed it.
type victim struct {
	key    string
	size   int64 // as the index says
	access int64 // Unix nanoseconds
}

// evictOldest reads the access-order index from its oldest record and
// deletes those objects, evictBatch at a time, until excess bytes are
// freed or the index ends. It returns how many objects it deleted and
// their bytes. Its memory is one batch, whatever the size of the cache:
// each batch is read on a fresh snapshot, from just past the last record
// of the batch before, so that no snapshot pins the memtables that the
// deletions fill, and no iterator walks the tombstones they leave.
func (s *Store) evictOldest(ctx context.Context, excess int64) (n int, freed int64, err error) {
	batch := make([]victim, 0, evictBatch)
	var from []byte // where the next batch starts: past the last record read
	for freed < excess {
		if err := ctx.Err(); err != nil {
			return n, freed, err
		}
		var more bool
		batch, from, more, err = s.readVictims(batch[:0], from, excess-freed)
		if err != nil {
			return n, freed, err
		}
		dn, df, err := s.deleteVictims(ctx, batch)
		n, freed = n+dn, freed+df
		if err != nil || !more {
			return n, freed, err
		}
	}
	return n, freed, nil
}

// readVictims appends to batch, up to evictBatch, the index records from
// the key from on whose sizes add up to want, and returns where the next
// batch starts and whether the index goes on.
func (s *Store) readVictims(batch []victim, from []byte, want int64) ([]victim, []byte, bool, error) {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixOrder)
	it := txn.NewIterator(opts)
	defer it.Close()
	var held int64
	it.Seek(from)
	for ; it.Valid() && held < want && len(batch) < evictBatch; it.Next() {
		item := it.Item()
		from = append(item.KeyCopy(from[:0]), 0) // the least key after this one
		at, key, ok := parseOrderKey(item.Key())
		var r accessRec
		if ok {
			_ = item.Value(func(b []byte) error { ok = r.decodeSize(b); return nil })
		}
		if !ok || !s.evictable(string(key)) {
			continue
		}
		batch = append(batch, victim{key: string(key), size: r.size, access: at})
		held += r.size
	}
	return batch, from, it.Valid(), nil
}

// deleteVictims deletes the victims, evictBatch per transaction (small
// value, blob manifest and index records of each, as Delete does), then
// the chunks of their blobs. A victim whose access record moved since the
// index was read (it was read, or replaced) is left alone; an index record
// without an object is deleted. It returns how many objects it deleted and
// their bytes.
func (s *Store) deleteVictims(ctx context.Context, victims []victim) (n int, size int64, err error) {
	removals := make([]removal, 0, evictBatch)
	for len(victims) > 0 {
		batch := victims[:min(evictBatch, len(victims))]
		victims = victims[len(batch):]
		s.disk.preallocate()
		err := s.update(ctx, func(txn *badger.Txn) error {
			var err error
			removals, err = s.removeVictims(txn, batch, removals[:0])
			return err
		})
		if err != nil {
			return n, size, err
		}
		for i, v := range batch {
			r := removals[i]
			if r.value < 0 && r.blob == nil {
				continue
			}
			s.removed(v.key, r)
			n++
			size += max(r.value, 0)
			if r.blob != nil {
				size += r.blob.size
			}
		}
	}
	return n, size, nil
}

// removeVictims deletes in txn the victims that are still what the index
// said, and appends to out what each removed. It reads one a/ record per
// victim (a Get: Badger's bloom filters skip the tables that do not hold
// it), and the manifest only of victims with a blob.
func (s *Store) removeVictims(txn *badger.Txn, batch []victim, out []removal) ([]removal, error) {
	for _, v := range batch {
		plan, ok, err := readAccess(txn, v.key)
		switch {
		case err != nil:
			return out, err
		case !ok:
			plan.at = 0 // a stale index record: delete it
		case plan.at != v.access:
			plan.at = -1 // read or replaced since: leave it
		}
		r := removal{value: -1}
		switch {
		case plan.at > 0 && plan.blob:
			if r, err = s.victimBlob(txn, v.key, plan); err != nil {
				return out, err
			}
		case plan.at > 0:
			r.value = plan.size
		}
		out = append(out, r)
		if err := s.deleteVictim(txn, v, plan, r); err != nil {
			return out, err
		}
	}
	return out, nil
}

// itemAccess decodes the a/ record of item.
func itemAccess(item *badger.Item) (r accessRec, ok bool) {
	_ = item.Value(func(b []byte) error { r, ok = decodeAccessRec(b); return nil })
	return r, ok
}

// victimBlob reads what a victim with a blob holds: the manifest (nil if
// corrupt: the manifest is deleted all the same, its chunks swept later)
// and the small value beside it, if any.
func (s *Store) victimBlob(txn *badger.Txn, key string, cur accessRec) (removal, error) {
	r := removal{value: -1}
	m, err := getManifest(txn, key)
	switch {
	case err == nil:
		r.blob = &m
	case errors.Is(err, ErrCorrupt):
		s.log.Warn("evicting a blob whose manifest is corrupt", zap.String("key", key), zap.Error(err))
	case !errors.Is(err, ErrNotFound):
		return r, err
	}
	value, err := valueSize(txn, key)
	if err != nil {
		return r, err
	}
	if value >= 0 {
		r.value = cur.size
		if r.blob != nil {
			r.value -= r.blob.size
		}
	}
	return r, nil
}

// deleteVictim writes the deletions that removeVictims planned for v:
// none (plan.at < 0), the stale index record (plan.at 0), or the object
// and its index records.
func (s *Store) deleteVictim(txn *badger.Txn, v victim, plan accessRec, r removal) error {
	switch {
	case plan.at < 0:
		return nil
	case plan.at == 0:
		return txn.Delete(orderKey(v.access, v.key))
	}
	keys := [][]byte{accessKey(v.key), orderKey(v.access, v.key)}
	if r.value >= 0 {
		keys = append(keys, valueKey(v.key))
	}
	if plan.blob {
		keys = append(keys, blobKey(v.key))
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
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
