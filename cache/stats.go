package cache

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Stats counts the stored objects and their bytes, in total and by kind (the
// part of the key before its first '/').
type Stats struct {
	Kinds        map[string]KindStats
	TotalObjects int64
	TotalBytes   int64
}

// KindStats counts the objects of one kind and their bytes.
type KindStats struct {
	Objects int64
	Bytes   int64
}

// Stats returns the counts of small values and blobs. They are kept
// incrementally: counted once by a scan at Open, then adjusted by every
// write and delete after it commits, so a call costs O(number of kinds),
// whatever the size of the cache. Bytes are the sizes of the values as
// stored by callers (a blob counts its content size); the size of a small
// value of Config.ValueThreshold bytes or more, which Badger keeps in its
// value log, is estimated to within a few bytes when it is counted by the
// scan or replaced.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
	return s.stats.snapshot(), nil
}

// statsCounter holds the incremental Stats of a store.
type statsCounter struct {
	mu sync.Mutex
	st Stats
}

func (c *statsCounter) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Kinds = maps.Clone(c.st.Kinds)
	if st.Kinds == nil {
		st.Kinds = map[string]KindStats{}
	}
	return st
}

// totals returns the objects and bytes counted, without copying the kinds.
func (c *statsCounter) totals() (objects, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.TotalObjects, c.st.TotalBytes
}

func (c *statsCounter) set(st Stats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st = st
}

// replace counts an object of size bytes stored under key, replacing one
// of old bytes (old < 0: none).
func (c *statsCounter) replace(key string, old, size int64) {
	objects := int64(1)
	if old >= 0 {
		objects, size = 0, size-old
	}
	c.add(key, objects, size)
}

// remove uncounts an object of size bytes under key (size < 0: none).
func (c *statsCounter) remove(key string, size int64) {
	if size >= 0 {
		c.add(key, -1, -size)
	}
}

func (c *statsCounter) add(key string, objects, bytes int64) {
	kind := string(kindOf([]byte(key)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st.Kinds == nil {
		c.st.Kinds = make(map[string]KindStats)
	}
	k := c.st.Kinds[kind]
	k.Objects += objects
	k.Bytes += bytes
	if k.Objects <= 0 {
		delete(c.st.Kinds, kind)
	} else {
		c.st.Kinds[kind] = k
	}
	c.st.TotalObjects += objects
	c.st.TotalBytes += bytes
}

// scanStats counts the small values and blobs on a consistent snapshot,
// from keys and manifests only.
func (s *Store) scanStats(ctx context.Context) (Stats, error) {
	st := Stats{Kinds: make(map[string]KindStats)}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	if err := s.countValues(ctx, txn, &st); err != nil {
		return Stats{}, fmt.Errorf("cache: stats: %w", err)
	}
	err := scanManifests(ctx, txn, "", func(key []byte, m manifest, err error) error {
		if err != nil {
			s.log.Warn("stats: skipping corrupt blob manifest", zap.ByteString("key", key), zap.Error(err))
			return nil
		}
		st.add(kindOf(key), m.size)
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("cache: stats: %w", err)
	}
	return st, nil
}

// countValues adds the small values to st, iterating over keys only.
func (s *Store) countValues(ctx context.Context, txn *badger.Txn, st *Stats) error {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixValue)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		st.add(kindOf(item.Key()[len(prefixValue):]), itemValueSize(item))
	}
	return nil
}

// itemValueSize is the caller's size of the small value record of item
// (estimated within a few bytes when it lies in the value log).
func itemValueSize(item *badger.Item) int64 {
	return max(item.ValueSize()-valueHeaderLen, 0)
}

// add counts one object of kind with size bytes.
func (st *Stats) add(kind []byte, size int64) {
	k := st.Kinds[string(kind)]
	k.Objects++
	k.Bytes += size
	st.Kinds[string(kind)] = k
	st.TotalObjects++
	st.TotalBytes += size
}
