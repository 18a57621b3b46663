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

// Entry is a small value with the time it was stored.
type Entry struct {
	Value  []byte
	Stored time.Time
	// Mark is the byte stored with the value by PutMarked (Badger's user
	// metadata); 0 if none. The cache gives it no meaning.
	Mark byte
}

// Get returns the small value stored under key, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (Entry, error) {
	if err := checkCall(ctx, key); err != nil {
		return Entry{}, err
	}
	var e Entry
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		e, err = getEntry(txn, valueKey(key))
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("cache: get %q: %w", key, err)
	}
	s.touch(key)
	return e, nil
}

// Put stores value under key with the current time, replacing any small
// value stored there. Put is meant for values of up to a few MiB; use PutBlob
// for larger ones.
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	return s.PutMarked(ctx, key, value, 0)
}

// PutMarked is Put that stores mark with the value (see Entry.Mark), in the
// same write.
func (s *Store) PutMarked(ctx context.Context, key string, value []byte, mark byte) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	what := describe(key, int64(len(value)))
	if err := s.disk.admit(what, int64(len(value)), s.floorApplies(key)); err != nil {
		return fmt.Errorf("cache: put %q: %w", key, err)
	}
	if err := s.staleIndex(key); err != nil {
		return fmt.Errorf("cache: put %q: %w", key, err)
	}
	now := s.now()
	rec := encodeValue(value, now)
	var old int64
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if old, err = valueSize(txn, key); err != nil {
			return err
		}
		if s.tracks(key) {
			blob, hasBlob, err := blobSize(txn, key)
			if err != nil {
				return err
			}
			r := accessRec{at: now.UnixNano(), size: blob + int64(len(value)), blob: hasBlob}
			if err := s.index(txn, key, r); err != nil {
				return err
			}
		}
		return txn.SetEntry(badger.NewEntry(valueKey(key), rec).WithMeta(mark))
	})
	if err != nil {
		return fmt.Errorf("cache: put %q: %w", key, s.disk.classify(what, err))
	}
	s.stats.replace(key, old, int64(len(value)))
	s.grew()
	return nil
}

// valueSize returns the size of the small value under key, or -1 if there
// is none. It reads the key only.
func valueSize(txn *badger.Txn, key string) (int64, error) {
	item, err := txn.Get(valueKey(key))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return -1, nil
	case err != nil:
		return 0, err
	}
	return itemValueSize(item), nil
}

// CompareAndSwap stores new under key (with the current time) only if the
// current value equals old. A nil old means the key must be absent; a non-nil
// empty old means the key must hold an empty value. If the current value
// differs, it returns ErrConflict and changes nothing. The check and the
// write are one transaction.
func (s *Store) CompareAndSwap(ctx context.Context, key string, old, new []byte) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	k := valueKey(key)
	what := describe(key, int64(len(new)))
	if err := s.disk.admit(what, int64(len(new)), false); err != nil {
		return fmt.Errorf("cache: compare-and-swap %q: %w", key, err)
	}
	if err := s.staleIndex(key); err != nil {
		return fmt.Errorf("cache: compare-and-swap %q: %w", key, err)
	}
	rec := encodeValue(new, s.now())
	var prev int64
	err := s.update(ctx, func(txn *badger.Txn) error {
		cur, err := getEntry(txn, k)
		prev = int64(len(cur.Value))
		switch {
		case errors.Is(err, ErrNotFound):
			if old != nil {
				return ErrConflict
			}
			prev = -1
		case err != nil:
			return err
		case old == nil || !bytes.Equal(cur.Value, old):
			return ErrConflict
		}
		return txn.Set(k, rec)
	})
	if errors.Is(err, badger.ErrConflict) {
		err = fmt.Errorf("%w: too much contention: %w", ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("cache: compare-and-swap %q: %w", key, s.disk.classify(what, err))
	}
	s.stats.replace(key, prev, int64(len(new)))
	return nil
}

// Delete removes the small value and the blob stored under key. The blob's
// manifest goes first, in the same transaction as the small value, so the
// blob disappears atomically; its chunks are deleted afterwards. Deleting an
// absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	s.disk.preallocate()
	if err := s.staleIndex(key); err != nil {
		return fmt.Errorf("cache: delete %q: %w", key, err)
	}
	var r removal
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		r, err = s.removeInTxn(txn, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("cache: delete %q: %w", key, err)
	}
	s.removed(key, r)
	return nil
}

// removal is what removeInTxn deleted under a key.
type removal struct {
	value int64     // size of the small value; -1 if there was none
	blob  *manifest // the blob's manifest; nil if there was none
}

// removeInTxn deletes the small value, the blob manifest and the index
// records of key in txn, and returns what was there.
func (s *Store) removeInTxn(txn *badger.Txn, key string) (removal, error) {
	var r removal
	m, err := getManifest(txn, key)
	hasBlob := !errors.Is(err, ErrNotFound)
	switch {
	case err == nil:
		r.blob = &m
	case errors.Is(err, ErrCorrupt): // deleted all the same; its chunks become orphans for Sweep
		s.log.Warn("deleting corrupt blob manifest", zap.String("key", key), zap.Error(err))
	case !hasBlob:
	default:
		return r, err
	}
	if r.value, err = valueSize(txn, key); err != nil {
		return r, err
	}
	if r.value >= 0 {
		if err := txn.Delete(valueKey(key)); err != nil {
			return r, err
		}
	}
	if err := s.unindex(txn, key); err != nil {
		return r, err
	}
	if !hasBlob {
		return r, nil
	}
	return r, txn.Delete(blobKey(key))
}

// removed accounts for a committed removal and deletes the chunks of the
// removed blob.
func (s *Store) removed(key string, r removal) {
	s.stats.remove(key, r.value)
	if r.blob != nil {
		s.stats.remove(key, r.blob.size)
		s.dropGen(r.blob.gen, r.blob.chunks)
	}
}

// Scan calls fn for every small value whose key starts with prefix, in key
// order, on a consistent snapshot. Entry.Value belongs to fn. Scan stops at
// the first error of fn and returns it unchanged.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, e Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	opts := badger.DefaultIteratorOptions
	opts.Prefix = valueKey(prefix)
	opts.PrefetchSize = 16
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		key := string(item.Key()[len(prefixValue):])
		e, err := itemEntry(item)
		if err != nil {
			return fmt.Errorf("cache: scan %q: %q: %w", prefix, key, err)
		}
		if err := fn(key, e); err != nil {
			return err
		}
	}
	return nil
}

// ScanDesc is Scan backwards: it calls fn for every small value whose key
// starts with prefix and, unless end is "", sorts before end, from the
// last key to the first, on a consistent snapshot. Reading the newest n
// entries of a log kept under time-ordered keys costs O(n), not O(log
// size).
func (s *Store) ScanDesc(ctx context.Context, prefix, end string, fn func(key string, e Entry) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	opts := badger.DefaultIteratorOptions
	opts.Prefix = valueKey(prefix)
	opts.PrefetchSize = 16
	opts.Reverse = true
	it := txn.NewIterator(opts)
	defer it.Close()
	// A reverse Seek finds the last key at or before its argument: past
	// every key of the prefix (keys are at most MaxKeyLen bytes), or end.
	seek := append(valueKey(prefix), bytes.Repeat([]byte{0xff}, MaxKeyLen+1-len(prefix))...)
	if end != "" {
		seek = valueKey(end)
	}
	for it.Seek(seek); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		key := string(item.Key()[len(prefixValue):])
		if end != "" && key >= end {
			continue
		}
		e, err := itemEntry(item)
		if err != nil {
			return fmt.Errorf("cache: scan %q: %q: %w", prefix, key, err)
		}
		if err := fn(key, e); err != nil {
			return err
		}
	}
	return nil
}

// getEntry reads and decodes the small value record at k.
func getEntry(txn *badger.Txn, k []byte) (Entry, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, err
	}
	return itemEntry(item)
}

// itemEntry decodes the small value record of item into a fresh Entry.
func itemEntry(item *badger.Item) (Entry, error) {
	var e Entry
	err := item.Value(func(rec []byte) error {
		v, stored, err := decodeValue(rec)
		e = Entry{Value: bytes.Clone(v), Stored: stored, Mark: item.UserMeta()}
		return err
	})
	return e, err
}

// checkCall performs the checks common to every keyed method.
func checkCall(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return checkKey(key)
}

// update runs fn in a read-write transaction, retrying while it loses a
// Badger conflict to a concurrent writer.
func (s *Store) update(ctx context.Context, fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) || attempt == maxRetries {
			return err
		}
	}
}
