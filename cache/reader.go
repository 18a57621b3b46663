package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Blob reads a stored blob. It implements io.ReadSeekCloser, so
// http.ServeContent can serve it, and reads one chunk at a time.
//
// A Blob reads a consistent snapshot: it holds a read-only Badger
// transaction until Close, so a concurrent PutBlob or Delete of the same key
// cannot tear it. Close it promptly, since the snapshot keeps Badger from
// reclaiming the space of replaced data.
//
// Every chunk is checked against the manifest's chunk size; a missing or
// wrongly sized chunk makes Read fail with ErrCorrupt. When the blob is read
// from its start to its end in order, the SHA-256 of the content is checked
// too, before the bytes of the last chunk are returned.
//
// A Blob is not safe for concurrent use.
type Blob struct {
	s   *Store
	key string
	m   manifest
	txn *badger.Txn
	it  *badger.Iterator

	pos    int64
	bufp   *[]byte
	buf    []byte // content of chunk bufIdx
	bufIdx int64  // -1: none loaded
	h      hash.Hash
	hashed int64 // bytes hashed in order from the start; -1: not in order
	err    error // sticky error (corruption, closed)
}

var _ io.ReadSeekCloser = (*Blob)(nil)

// errBlobClosed is returned by the methods of a closed Blob.
var errBlobClosed = fmt.Errorf("cache: blob: %w", fs.ErrClosed)

// OpenBlob opens the blob stored under key, or returns ErrNotFound. ctx
// governs only the opening.
func (s *Store) OpenBlob(ctx context.Context, key string) (*Blob, error) {
	if err := checkCall(ctx, key); err != nil {
		return nil, err
	}
	txn := s.db.NewTransaction(false)
	m, err := getManifest(txn, key)
	if err != nil {
		txn.Discard()
		return nil, fmt.Errorf("cache: open blob %q: %w", key, err)
	}
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = genPrefix(m.gen)
	// An open iterator also keeps Badger's value log GC from deleting the
	// files that hold this snapshot's chunks.
	it := txn.NewIterator(opts)
	s.touch(key)
	return &Blob{s: s, key: key, m: m, txn: txn, it: it, bufIdx: -1}, nil
}

// Size returns the size of the blob in bytes.
func (b *Blob) Size() int64 { return b.m.size }

// Stored returns the time the blob was stored.
func (b *Blob) Stored() time.Time { return b.m.stored }

// SHA256 returns the SHA-256 of the blob's content, recorded when stored.
func (b *Blob) SHA256() [sha256.Size]byte { return b.m.sum }

// Read reads up to len(p) bytes from the current position.
func (b *Blob) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.pos >= b.m.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	idx := b.pos / b.m.chunkSize
	if err := b.load(idx); err != nil {
		b.err = err
		return 0, err
	}
	n := copy(p, b.buf[b.pos-idx*b.m.chunkSize:])
	b.pos += int64(n)
	return n, nil
}

// Seek sets the position of the next Read. A position past the end is
// allowed (Read then returns io.EOF); a negative one is an error.
func (b *Blob) Seek(offset int64, whence int) (int64, error) {
	if errors.Is(b.err, fs.ErrClosed) {
		return 0, b.err
	}
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = b.pos + offset
	case io.SeekEnd:
		pos = b.m.size + offset
	default:
		return 0, fmt.Errorf("cache: blob %q: seek: invalid whence %d", b.key, whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("cache: blob %q: seek: negative position %d", b.key, pos)
	}
	b.pos = pos
	return pos, nil
}

// Close releases the blob's snapshot. Closing twice is not an error.
func (b *Blob) Close() error {
	if b.txn == nil {
		return nil
	}
	b.it.Close()
	b.txn.Discard()
	b.txn, b.it = nil, nil
	if b.bufp != nil && cap(b.buf) == b.s.chunkSize {
		*b.bufp = b.buf[:b.s.chunkSize]
		b.s.bufs.Put(b.bufp)
	}
	b.bufp, b.buf = nil, nil
	b.err = errBlobClosed
	return nil
}

// load reads chunk idx into b.buf and checks it.
func (b *Blob) load(idx int64) error {
	if b.bufIdx == idx {
		return nil
	}
	if b.bufp == nil {
		b.bufp = b.s.getBuf()
		b.buf = (*b.bufp)[:0]
	}
	b.bufIdx = -1
	key := chunkKey(b.m.gen, uint32(idx))
	b.it.Seek(key)
	if !b.it.Valid() || !bytes.Equal(b.it.Item().Key(), key) {
		return fmt.Errorf("%w: blob %q: chunk %d of %d is missing", ErrCorrupt, b.key, idx, b.m.chunks)
	}
	err := b.it.Item().Value(func(v []byte) error {
		b.buf = append(b.buf[:0], v...)
		if b.s.trims(len(v)) {
			dropPages(v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: blob %q: chunk %d: %w", ErrCorrupt, b.key, idx, err)
	}
	buf := b.buf
	if want := b.m.chunkLen(idx); int64(len(buf)) != want {
		return fmt.Errorf("%w: blob %q: chunk %d has %d bytes, want %d", ErrCorrupt, b.key, idx, len(buf), want)
	}
	if err := b.verify(idx); err != nil {
		return err
	}
	b.bufIdx = idx
	return nil
}

// verify feeds chunk idx, just loaded, to the content hash if the chunks
// have been loaded in order from the start, and checks the hash after the
// last one.
func (b *Blob) verify(idx int64) error {
	switch {
	case idx == 0:
		if b.h == nil {
			b.h = sha256.New()
		}
		b.h.Reset()
		b.hashed = 0
	case b.hashed != idx*b.m.chunkSize:
		b.hashed = -1
		return nil
	}
	b.h.Write(b.buf)
	b.hashed += int64(len(b.buf))
	if b.hashed < b.m.size {
		return nil
	}
	var sum [sha256.Size]byte
	if !bytes.Equal(b.h.Sum(sum[:0]), b.m.sum[:]) {
		return fmt.Errorf("%w: blob %q: content does not match its SHA-256", ErrCorrupt, b.key)
	}
	return nil
}

// Verify reads the whole blob once, checking every chunk's presence,
// length and checksum (Badger's CRC of each value, computed as it is read)
// without copying it out, then rewinds to the start. A blob that fails
// returns ErrCorrupt, so that a caller can drop it before sending any byte
// of it. It costs one pass of CRC32C over the blob, a fraction of the
// SHA-256 that the reads that follow still check, in order, before the
// last chunk's bytes are handed out.
func (b *Blob) Verify() error {
	if b.err != nil {
		return b.err
	}
	for idx := int64(0); idx < int64(b.m.chunks); idx++ {
		key := chunkKey(b.m.gen, uint32(idx))
		b.it.Seek(key)
		if !b.it.Valid() || !bytes.Equal(b.it.Item().Key(), key) {
			return b.fail(fmt.Errorf("%w: blob %q: chunk %d of %d is missing", ErrCorrupt, b.key, idx, b.m.chunks))
		}
		var n int64
		err := b.it.Item().Value(func(v []byte) error {
			n = int64(len(v))
			if b.s.trims(len(v)) {
				dropPages(v)
			}
			return nil
		})
		if err != nil {
			return b.fail(fmt.Errorf("%w: blob %q: chunk %d: %w", ErrCorrupt, b.key, idx, err))
		}
		if want := b.m.chunkLen(idx); n != want {
			return b.fail(fmt.Errorf("%w: blob %q: chunk %d has %d bytes, want %d", ErrCorrupt, b.key, idx, n, want))
		}
	}
	b.pos = 0
	return nil
}

// fail makes err the blob's sticky error and returns it.
func (b *Blob) fail(err error) error {
	b.err = err
	return err
}
