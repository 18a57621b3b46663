package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The access-order index of the bounded cache (Config.MaxSize).
//
// Every evictable object has two records, written in the transaction that
// stores the object, moved by the flush of access times and deleted with
// the object:
//
//	a/<key>           its last access (Unix nanoseconds, 8 bytes big
//	                  endian), then its size field
//	t/<access:8><key> its size field
//
// The size field is a uvarint of size×2 + blob: size is the small value's
// and the blob's bytes under key added, blob is 1 if key holds a blob, so
// that an eviction reads a blob's manifest only for keys that have one.
//
// Badger keeps keys sorted, so the t/ records list the objects least
// recently used first: an eviction pass reads them from the start and stops
// once it has found enough bytes, in O(evicted) reads and O(evicted × log n)
// deletes, whatever the size of the cache. The a/ record says where an
// object's t/ record is, so that an access or a delete moves or removes it
// with one point read.
//
// The marker key m/access-index says that the index is complete. An
// unbounded store does not keep the index, so it deletes the marker before
// its first write or delete of an evictable object; a bounded store
// without the marker (a cache from before the index,
// or one opened unbounded since) builds the index at Open, once, before it
// serves (buildIndex). A crash during the build leaves no marker, and the
// next Open builds it again from the start.

const (
	prefixOrder = "t/"
	// markerIndex marks a complete access-order index.
	markerIndex = "m/access-index"
	// indexVersion is the value of markerIndex.
	indexVersion = 1
	// flushBatch is the number of access times moved per transaction.
	flushBatch = 512
)

// accessRec is the a/ record of an object.
type accessRec struct {
	at   int64 // Unix nanoseconds of the last access
	size int64 // bytes of the object (small value and blob)
	blob bool  // key holds a blob
}

func (r accessRec) encode() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+binary.MaxVarintLen64), uint64(r.at))
	return r.appendSize(b)
}

// appendSize appends the size field of r to b.
func (r accessRec) appendSize(b []byte) []byte {
	f := uint64(r.size) << 1
	if r.blob {
		f |= 1
	}
	return binary.AppendUvarint(b, f)
}

// decodeSize parses a size field into r; false if it is malformed.
func (r *accessRec) decodeSize(b []byte) bool {
	f, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return false
	}
	r.size, r.blob = int64(f>>1), f&1 == 1
	return true
}

// decodeAccessRec parses an a/ record. A record of 8 bytes (from before
// the index) has no size: indexed is false.
func decodeAccessRec(b []byte) (r accessRec, indexed bool) {
	if len(b) < 8 {
		return accessRec{}, false
	}
	r.at = int64(binary.BigEndian.Uint64(b))
	if !r.decodeSize(b[8:]) {
		return accessRec{at: r.at}, false
	}
	return r, true
}

// orderKey is the t/ key of key accessed at at.
func orderKey(at int64, key string) []byte {
	k := make([]byte, 0, len(prefixOrder)+8+len(key))
	k = append(k, prefixOrder...)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, key...)
}

// parseOrderKey splits a t/ key.
func parseOrderKey(k []byte) (at int64, key []byte, ok bool) {
	if len(k) <= len(prefixOrder)+8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k[len(prefixOrder):])), k[len(prefixOrder)+8:], true
}

// readAccess returns the a/ record of key; ok is false if there is none or
// it is not indexed.
func readAccess(txn *badger.Txn, key string) (r accessRec, ok bool, err error) {
	item, err := txn.Get(accessKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return accessRec{}, false, nil
	}
	if err != nil {
		return accessRec{}, false, err
	}
	err = item.Value(func(b []byte) error {
		r, ok = decodeAccessRec(b)
		return nil
	})
	return r, ok, err
}

// index records in txn that key (r.size bytes, with a blob if r.blob) was
// accessed at r.at, moving its t/ record. It does nothing for keys the
// store does not track.
func (s *Store) index(txn *badger.Txn, key string, r accessRec) error {
	if !s.tracks(key) {
		return nil
	}
	if err := dropOrder(txn, key); err != nil {
		return err
	}
	if err := txn.Set(accessKey(key), r.encode()); err != nil {
		return err
	}
	return txn.Set(orderKey(r.at, key), r.appendSize(nil))
}

// unindex deletes the a/ and t/ records of key in txn.
func (s *Store) unindex(txn *badger.Txn, key string) error {
	if !s.tracks(key) {
		return nil
	}
	if err := dropOrder(txn, key); err != nil {
		return err
	}
	return txn.Delete(accessKey(key))
}

// dropOrder deletes in txn the t/ record of key that its a/ record names,
// if it has one.
func dropOrder(txn *badger.Txn, key string) error {
	old, ok, err := readAccess(txn, key)
	if err != nil || !ok {
		return err
	}
	return txn.Delete(orderKey(old.at, key))
}

// blobSize returns the size of the blob under key, and whether there is
// one (a corrupt manifest counts as none).
func blobSize(txn *badger.Txn, key string) (int64, bool, error) {
	m, err := getManifest(txn, key)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	return m.size, true, nil
}

// moveAccess moves the t/ records of the keys in pending to their newer
// access times, flushBatch keys per transaction. Keys without an indexed
// a/ record (deleted since they were read) are skipped, and so are
// records already newer.
func (s *Store) moveAccess(ctx context.Context, pending map[string]int64) error {
	keys := make([]string, 0, min(len(pending), flushBatch))
	flush := func() error {
		err := s.update(ctx, func(txn *badger.Txn) error {
			for _, key := range keys {
				old, ok, err := readAccess(txn, key)
				if err != nil {
					return err
				}
				if !ok || old.at >= pending[key] {
					continue
				}
				old.at = pending[key]
				if err := s.index(txn, key, old); err != nil {
					return err
				}
			}
			return nil
		})
		keys = keys[:0]
		return err
	}
	for key := range pending {
		if keys = append(keys, key); len(keys) == flushBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(keys) > 0 {
		return flush()
	}
	return nil
}

// prepareIndex makes the index match the store's bound at Open: an
// unbounded store notes the marker, to drop it before its first write of
// an evictable object (staleIndex); a bounded one without the marker
// builds the index.
func (s *Store) prepareIndex(ctx context.Context) error {
	var marked bool
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(markerIndex))
		marked = err == nil
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("cache: access index: %w", err)
	case s.maxSize <= 0:
		s.indexMarked.Store(marked)
		return nil
	case marked:
		return nil
	}
	start := time.Now()
	n, err := s.buildIndex(ctx)
	if err != nil {
		return fmt.Errorf("cache: building the access index: %w", err)
	}
	s.indexBuilt = true
	s.log.Info("built the access-order index of the bounded cache (once)",
		zap.Int("objects", n), zap.Duration("duration", time.Since(start)))
	return nil
}

// staleIndex drops the marker of a complete index before an unbounded
// store writes or deletes the evictable object under key, which it does
// not index: the next bounded Open then builds the index again. Writes of
// other keys (the witness state of the offline witness commands) leave
// the index complete.
func (s *Store) staleIndex(key string) error {
	if s.maxSize > 0 || !s.indexMarked.Load() || !s.evictable(key) {
		return nil
	}
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if !s.indexMarked.Load() {
		return nil
	}
	if err := s.deleteKeys([][]byte{[]byte(markerIndex)}); err != nil {
		return fmt.Errorf("cache: access index: %w", err)
	}
	s.indexMarked.Store(false)
	return nil
}
