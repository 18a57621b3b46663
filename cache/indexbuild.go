package cache

import (
	"context"
	"maps"
	"slices"

	"github.com/dgraph-io/badger/v4"
)

// buildIndex writes the a/ and t/ records of every evictable object, then
// the marker of a complete index, and returns how many objects it indexed.
// It runs at Open, before the store is used, so nothing writes beside it.
//
// An object's access time is its a/ record's if it has one (a cache from
// before the index recorded accesses already), else the time it was
// stored. It costs one key-only scan of the small values, one scan of the
// blob manifests and a merge join with the a/ records (no seek per
// object), and writes two records per object.
func (s *Store) buildIndex(ctx context.Context) (int, error) {
	// t/ records of an index that was not completed, or went stale while
	// the store was unbounded. (DropPrefix flushes the memtable and
	// rewrites tables: only when there is something to drop.)
	if stale, err := s.hasPrefix([]byte(prefixOrder)); err != nil {
		return 0, err
	} else if stale {
		if err := s.db.DropPrefix([]byte(prefixOrder)); err != nil {
			return 0, err
		}
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	blobs, err := s.evictableBlobs(ctx, txn)
	if err != nil {
		return 0, err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	ac := newAccessCursor(txn)
	defer ac.close()
	n := 0
	put := func(key []byte, r accessRec) error {
		if at := ac.at(key); at > 0 {
			r.at = at
		}
		n++
		if err := wb.Set(accessKey(string(key)), r.encode()); err != nil {
			return err
		}
		return wb.Set(orderKey(r.at, string(key)), r.appendSize(nil))
	}
	err = s.eachValue(ctx, txn, func(key []byte, item *badger.Item) error {
		if !s.evictable(string(key)) {
			return nil
		}
		r := accessRec{size: itemValueSize(item)}
		_ = item.Value(func(rec []byte) error {
			if _, stored, err := decodeValue(rec); err == nil {
				r.at = stored.UnixNano()
			}
			return nil
		})
		if b, ok := blobs[string(key)]; ok {
			r.size += b.size
			r.at, r.blob = max(r.at, b.at), true
			delete(blobs, string(key))
		}
		return put(key, r)
	})
	if err != nil {
		return 0, err
	}
	for _, key := range slices.Sorted(maps.Keys(blobs)) {
		if err := put([]byte(key), blobs[key]); err != nil {
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	// The marker goes last: a crash before it leaves a store that builds
	// the index again at its next Open.
	return n, s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(markerIndex), []byte{indexVersion})
	})
}

// eachValue calls fn with the caller key (valid only during the call) and
// the item of every small value, in key order, without prefetching values.
func (s *Store) eachValue(ctx context.Context, txn *badger.Txn, fn func(key []byte, item *badger.Item) error) error {
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
		if err := fn(item.Key()[len(prefixValue):], item); err != nil {
			return err
		}
	}
	return nil
}

// hasPrefix reports whether any key starts with prefix.
func (s *Store) hasPrefix(prefix []byte) (bool, error) {
	var found bool
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		it.Rewind()
		found = it.Valid()
		return nil
	})
	return found, err
}

// evictableBlobs returns the size and stored time of every evictable blob
// (corrupt manifests left out), by key.
func (s *Store) evictableBlobs(ctx context.Context, txn *badger.Txn) (map[string]accessRec, error) {
	blobs := make(map[string]accessRec)
	err := scanManifests(ctx, txn, "", func(key []byte, m manifest, err error) error {
		if err == nil && s.evictable(string(key)) {
			blobs[string(key)] = accessRec{at: m.stored.UnixNano(), size: m.size, blob: true}
		}
		return nil
	})
	return blobs, err
}
