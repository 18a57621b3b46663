package cache

import (
	"context"
	"fmt"

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

// Stats counts the small values and blobs on a consistent snapshot. Bytes
// are the sizes of the values as stored by callers (a blob counts its content
// size); the size of a small value of Config.ValueThreshold bytes or more,
// which Badger keeps in its value log, is estimated to within a few bytes. Stats iterates over
// keys only, plus the blob manifests.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	if err := ctx.Err(); err != nil {
		return Stats{}, err
	}
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
		st.add(kindOf(item.Key()[len(prefixValue):]), max(item.ValueSize()-valueHeaderLen, 0))
	}
	return nil
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
