package cache

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// One eviction pass, batch by batch.
//
// Each batch is one read-write transaction that reads the oldest records
// of the access-order index (from just past the batch before), deletes
// their objects and commits. The index records are read in the
// transaction that deletes their objects, so Badger's conflict detection
// is the check that an object was not read or replaced since: a flush of
// access times, a Put or a Delete moves or removes the object's t/ record
// in the transaction that touches the object, so if one commits after the
// batch's snapshot, the batch's commit fails and the batch runs again on
// a fresh snapshot. An object read since is then no longer among the
// oldest, and stays unless the pass needs its bytes too.
//
// No other record is read: every write keeps an object, its a/ record and
// its t/ record together in one transaction (index.go), so a t/ record in
// the snapshot says the object is there, with that size, and whether it
// holds a blob (whose manifest alone is read, for its chunks). A batch's
// memory is reused by the next one, so a pass allocates what Badger
// allocates per deleted record (transaction, write-ahead log, memtable,
// then the flush and compaction of its tombstones) and little else.

// evictBatch is the number of index records read, and of objects deleted,
// per transaction.
const evictBatch = 512

// victim is an evictable object as the index listed it.
type victim struct {
	key    string
	size   int64 // as the index says
	access int64 // Unix nanoseconds
	state  victimState
}

// victimState is what a victim's index record says.
type victimState uint8

const (
	victimValue     victimState = iota // the object is a small value
	victimBlob                         // the object holds a blob (and perhaps a small value)
	victimMalformed                    // key is the whole index record's, which cannot be parsed: drop it
)

// evictScratch is the memory of one batch, reused by the next.
type evictScratch struct {
	victims  []victim
	removals []removal
	keys     []byte // keys of the batch's reads and deletions, end to end
	next     []byte // where the next batch starts: past the last record read
	value    []byte // the value of the index record being read
}

// evictOldest reads the access-order index from its oldest record and
// deletes those objects, evictBatch at a time, until excess bytes are
// freed or the index ends. It returns how many objects it deleted and
// their bytes. Its memory is one batch, whatever the size of the cache,
// and each batch runs on a fresh snapshot from just past the one before,
// so that no snapshot pins the memtables that the deletions fill and no
// iterator walks the tombstones they leave.
func (s *Store) evictOldest(ctx context.Context, excess int64) (n int, freed int64, err error) {
	b := &evictScratch{
		victims:  make([]victim, 0, evictBatch),
		removals: make([]removal, 0, evictBatch),
	}
	var from []byte
	for freed < excess {
		if err := ctx.Err(); err != nil {
			return n, freed, err
		}
		s.disk.preallocate()
		var more bool
		err := s.update(ctx, func(txn *badger.Txn) error {
			var err error
			more, err = s.evictBatch(txn, b, from, excess-freed)
			return err
		})
		if err != nil {
			return n, freed, err
		}
		dn, df := s.accountEvicted(b)
		n, freed = n+dn, freed+df
		if !more {
			return n, freed, nil
		}
		from = append(from[:0], b.next...)
	}
	return n, freed, nil
}

// evictBatch reads into b, in txn, up to evictBatch index records from the
// key from on whose sizes add up to want, and deletes their objects (the
// keys Badger holds until the commit are laid in b.keys, reused once the
// commit has copied them). It reports whether the index goes on past them.
func (s *Store) evictBatch(txn *badger.Txn, b *evictScratch, from []byte, want int64) (bool, error) {
	b.victims, b.removals, b.keys = b.victims[:0], b.removals[:0], b.keys[:0]
	more := s.readVictims(txn, b, from, want)
	b.reserveKeys()
	if s.evictHook != nil {
		s.evictHook(b)
	}
	for i := range b.victims {
		r, err := s.evictVictim(txn, b, &b.victims[i])
		if err != nil {
			return false, err
		}
		b.removals = append(b.removals, r)
	}
	return more, nil
}

// readVictims appends to b.victims, up to evictBatch, the index records
// from the key from on whose sizes add up to want, sets b.next past the
// last one read, and reports whether the index goes on. Reading them in
// txn makes them part of its conflict check.
func (s *Store) readVictims(txn *badger.Txn, b *evictScratch, from []byte, want int64) bool {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixOrder)
	it := txn.NewIterator(opts)
	defer it.Close()
	var held int64
	it.Seek(from)
	for ; it.Valid() && held < want && len(b.victims) < evictBatch; it.Next() {
		item := it.Item()
		b.next = append(item.KeyCopy(b.next[:0]), 0) // the least key after this one
		at, key, ok := parseOrderKey(item.Key())
		var r accessRec
		if ok {
			var err error
			b.value, err = item.ValueCopy(b.value[:0])
			ok = err == nil && r.decodeSize(b.value)
		}
		if !ok {
			s.log.Warn("dropping a malformed access-order record", zap.ByteString("key", item.Key()))
			b.victims = append(b.victims, victim{key: string(item.Key()), state: victimMalformed})
			continue
		}
		k := string(key)
		if !s.evictable(k) {
			continue
		}
		v := victim{key: k, size: r.size, access: at}
		if r.blob {
			v.state = victimBlob
		}
		b.victims = append(b.victims, v)
		held += r.size
	}
	return it.Valid()
}

// evictVictim deletes in txn the object v and its index records (or the
// malformed index record alone), and returns what it removed. The keys
// are laid end to end in b.keys, which Badger holds until the commit.
func (s *Store) evictVictim(txn *badger.Txn, b *evictScratch, v *victim) (removal, error) {
	r := removal{value: -1}
	if v.state == victimMalformed {
		return r, txn.Delete(b.key(v.key, -1, ""))
	}
	if v.state == victimBlob {
		var err error
		if r, err = s.victimBlob(txn, v.key, v.size); err != nil {
			return r, err
		}
	} else {
		r.value = v.size
	}
	if err := txn.Delete(b.key(prefixAccess, -1, v.key)); err != nil {
		return r, err
	}
	if err := txn.Delete(b.key(prefixOrder, v.access, v.key)); err != nil {
		return r, err
	}
	if r.value >= 0 {
		if err := txn.Delete(b.key(prefixValue, -1, v.key)); err != nil {
			return r, err
		}
	}
	if v.state == victimBlob {
		if err := txn.Delete(b.key(prefixBlob, -1, v.key)); err != nil {
			return r, err
		}
	}
	return r, nil
}

// reserveKeys makes b.keys hold the keys that the victims' deletions may
// lay: four prefixed keys and one time each, or a malformed record's key.
func (b *evictScratch) reserveKeys() {
	n := 0
	for _, v := range b.victims {
		n += len(v.key)
		if v.state != victimMalformed {
			n += 3*len(v.key) + 4*len(prefixValue) + 8
		}
	}
	if cap(b.keys) < n {
		b.keys = make([]byte, 0, n)
	}
}

// key lays prefix, at (8 bytes big endian, unless negative) and key at the
// end of b.keys and returns that key. A key never moves once laid: when
// b.keys must grow, the new array starts empty and the old one stays with
// the keys that Badger holds.
func (b *evictScratch) key(prefix string, at int64, key string) []byte {
	n := len(prefix) + len(key)
	if at >= 0 {
		n += 8
	}
	if cap(b.keys)-len(b.keys) < n {
		b.keys = make([]byte, 0, max(2*cap(b.keys), n))
	}
	start := len(b.keys)
	b.keys = append(b.keys, prefix...)
	if at >= 0 {
		b.keys = binary.BigEndian.AppendUint64(b.keys, uint64(at))
	}
	b.keys = append(b.keys, key...)
	return b.keys[start:len(b.keys):len(b.keys)]
}

// accountEvicted accounts for the removals of a committed batch and
// returns how many objects it deleted and their bytes.
func (s *Store) accountEvicted(b *evictScratch) (n int, size int64) {
	for i, v := range b.victims {
		r := b.removals[i]
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
	return n, size
}

// victimBlob reads what a victim with a blob holds: the manifest (nil if
// corrupt: the manifest is deleted all the same, its chunks swept later)
// and the small value beside it, if any. size is the object's as its a/
// record says: the small value's and the blob's added.
func (s *Store) victimBlob(txn *badger.Txn, key string, size int64) (removal, error) {
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
		r.value = size
		if r.blob != nil {
			r.value -= r.blob.size
		}
	}
	return r, nil
}
