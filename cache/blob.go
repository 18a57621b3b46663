package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Size   int64
	Stored time.Time
	SHA256 [sha256.Size]byte
}

// PutBlob stores the content of r under key as a blob. It reads exactly size
// bytes from r, or until EOF if size is negative; a reader that ends early or
// has more bytes makes it fail with ErrSizeMismatch.
//
// The content is written in chunks, each in its own transaction, under a
// fresh generation; then one transaction commits the manifest that makes
// the blob visible, replacing any previous blob under key, whose chunks are
// deleted afterwards. On any error (ErrSizeMismatch, a read error, ctx done,
// a Badger error) the new chunks are deleted and nothing visible changes. If
// the process dies before the manifest is committed, the chunks are orphans
// that the next Sweep (and so the next Open) deletes.
func (s *Store) PutBlob(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.PutBlobMarked(ctx, key, r, size, 0)
}

// PutBlobMarked is PutBlob that stores mark with the blob's manifest, in
// the commit that makes it visible (see Blob.Mark).
func (s *Store) PutBlobMarked(ctx context.Context, key string, r io.Reader, size int64, mark byte) error {
	if err := checkCall(ctx, key); err != nil {
		return err
	}
	what := describe(key, size)
	if size >= 0 {
		if err := s.disk.admit(what, size, true); err != nil {
			return fmt.Errorf("cache: put blob %q: %w", key, err)
		}
	}
	if err := s.staleIndex(key); err != nil {
		return fmt.Errorf("cache: put blob %q: %w", key, err)
	}
	gen := s.beginGen()
	defer s.endGen(gen)
	m, err := s.writeChunks(ctx, what, gen, r, size)
	m.mark = mark
	var old *manifest
	if err == nil {
		old, err = s.commitManifest(ctx, key, m)
	}
	if err != nil {
		s.dropGen(gen, m.chunks)
		return fmt.Errorf("cache: put blob %q: %w", key, s.disk.classify(what, err))
	}
	oldSize := int64(-1)
	if old != nil {
		oldSize = old.size
	}
	s.stats.replace(key, oldSize, m.size)
	if old != nil && old.gen != gen {
		s.dropGen(old.gen, old.chunks)
	}
	s.grew()
	return nil
}

// writeChunks copies r into the chunks of generation gen. The returned
// manifest counts the chunks written even when err is not nil.
//
// The bytes not yet written of a blob of known size count as pending in
// the space accounting (disk.go) until they are; every chunk is admitted
// before it is written, so a disk that fills up under a PutBlob ends it
// with a *DiskFullError instead of a write into a full disk.
func (s *Store) writeChunks(ctx context.Context, what string, gen uint64, r io.Reader, size int64) (manifest, error) {
	m := manifest{gen: gen, chunkSize: int64(s.chunkSize)}
	pending := s.disk.hold(size)
	defer pending.release()
	bufp := s.getBuf()
	defer s.bufs.Put(bufp)
	buf, h := *bufp, sha256.New()
	for size < 0 || m.size < size {
		if err := ctx.Err(); err != nil {
			return m, err
		}
		want := m.chunkSize
		if size >= 0 {
			want = min(want, size-m.size)
		}
		n, rerr := io.ReadFull(r, buf[:want])
		if n > 0 {
			if err := pending.admit(what, int64(n)); err != nil {
				return m, err
			}
			if err := s.setChunk(gen, m.chunks, buf[:n]); err != nil {
				return m, err
			}
			pending.wrote(int64(n))
			h.Write(buf[:n])
			m.chunks++
			m.size += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			if size >= 0 {
				return m, fmt.Errorf("%w: read %d bytes, want %d", ErrSizeMismatch, m.size, size)
			}
			break
		}
		if rerr != nil {
			return m, fmt.Errorf("read: %w", rerr)
		}
	}
	if size >= 0 {
		if err := expectEOF(r, size); err != nil {
			return m, err
		}
	}
	if err := s.db.Sync(); err != nil { // chunks durable before the manifest
		return m, err
	}
	m.stored = s.now()
	h.Sum(m.sum[:0])
	return m, nil
}

// expectEOF checks that r, after size bytes, has no more.
func expectEOF(r io.Reader, size int64) error {
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	switch {
	case n > 0:
		return fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, size)
	case err == io.EOF:
		return nil
	default:
		return fmt.Errorf("read: %w", err)
	}
}

// setChunk stores one chunk in its own transaction, then drops the pages
// it dirtied in the mapped value log from the resident set (dropPages).
func (s *Store) setChunk(gen uint64, index uint32, data []byte) error {
	key := chunkKey(gen, index)
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(key, data)
	})
	if err != nil || !s.trims(len(data)) {
		return err
	}
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return nil // only the trimming is lost
		}
		return item.Value(func(v []byte) error {
			dropPages(v)
			return nil
		})
	})
}

// commitManifest makes m the blob under key and returns the manifest it
// replaced, if any.
func (s *Store) commitManifest(ctx context.Context, key string, m manifest) (*manifest, error) {
	k, rec := blobKey(key), m.encode()
	var old *manifest
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if old, err = s.getManifestForReplace(txn, key); err != nil {
			return err
		}
		if s.tracks(key) {
			value, err := valueSize(txn, key)
			if err != nil {
				return err
			}
			r := accessRec{at: m.stored.UnixNano(), size: max(value, 0) + m.size, blob: true}
			if err := s.index(txn, key, r); err != nil {
				return err
			}
		}
		return txn.SetEntry(badger.NewEntry(k, rec).WithMeta(m.mark))
	})
	return old, err
}

// getManifestForReplace returns the manifest under key that a write is about
// to replace or delete, or nil if there is none. An undecodable manifest is
// logged and treated as absent (its chunks become orphans for Sweep).
func (s *Store) getManifestForReplace(txn *badger.Txn, key string) (*manifest, error) {
	m, err := getManifest(txn, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case errors.Is(err, ErrCorrupt):
		s.log.Warn("replacing corrupt blob manifest", zap.String("key", key), zap.Error(err))
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &m, nil
}

// getManifest reads the manifest of the blob under key, or ErrNotFound.
func getManifest(txn *badger.Txn, key string) (manifest, error) {
	item, err := txn.Get(blobKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return manifest{}, ErrNotFound
	}
	if err != nil {
		return manifest{}, err
	}
	var m manifest
	err = item.Value(func(b []byte) error {
		m, err = decodeManifest(b)
		return err
	})
	m.mark = item.UserMeta()
	return m, err
}

// dropGen deletes the chunks 0..n-1 of generation gen. A failure is only
// logged: the chunks are orphans then, and Sweep deletes them later.
func (s *Store) dropGen(gen uint64, n uint32) {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = chunkKey(gen, uint32(i))
	}
	if err := s.deleteKeys(keys); err != nil {
		s.log.Warn("deleting blob chunks", zap.Uint64("gen", gen), zap.Error(err))
	}
}

// HasBlob reports whether a complete blob is stored under key.
func (s *Store) HasBlob(ctx context.Context, key string) (bool, error) {
	if err := checkCall(ctx, key); err != nil {
		return false, err
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(key))
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("cache: has blob %q: %w", key, err)
	}
}

// ScanBlobs calls fn for every blob whose key starts with prefix, in key
// order, on a consistent snapshot. It reads manifests only. Scan stops at the
// first error of fn and returns it unchanged.
func (s *Store) ScanBlobs(ctx context.Context, prefix string, fn func(key string, info BlobInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	return scanManifests(ctx, txn, prefix, func(key []byte, m manifest, err error) error {
		if err != nil {
			return fmt.Errorf("cache: blob %q: %w", key, err)
		}
		return fn(string(key), m.info())
	})
}

// scanManifests calls fn with the key (without prefixBlob, valid only during
// the call) and the decoded manifest, or an ErrCorrupt decoding error, of
// every blob whose key starts with prefix. Other errors end the scan.
func scanManifests(ctx context.Context, txn *badger.Txn, prefix string,
	fn func(key []byte, m manifest, err error) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = blobKey(prefix)
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		key := item.Key()[len(prefixBlob):]
		var m manifest
		err := item.Value(func(b []byte) error {
			var err error
			m, err = decodeManifest(b)
			return err
		})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("cache: blob %q: %w", key, err)
		}
		if err := fn(key, m, err); err != nil {
			return err
		}
	}
	return nil
}

func (m manifest) info() BlobInfo {
	return BlobInfo{Size: m.size, Stored: m.stored, SHA256: m.sum}
}

// beginGen allocates a fresh generation and marks it in flight, so that
// Sweep leaves its chunks alone until endGen.
func (s *Store) beginGen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	gen := s.nextGen
	s.nextGen++
	s.inflight[gen] = struct{}{}
	return gen
}

func (s *Store) endGen(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inflight, gen)
}

// getBuf returns a chunk buffer from the pool; put it back with s.bufs.Put.
func (s *Store) getBuf() *[]byte {
	if p, ok := s.bufs.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, s.chunkSize)
	return &b
}
