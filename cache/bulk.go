package cache

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
)

// BulkBlob is one blob of PutBlobsMarked.
type BulkBlob struct {
	Key  string
	Size int64 // exactly; negative is refused
	Mark byte
	// Open opens the content, of exactly Size bytes.
	Open func() (io.ReadCloser, error)
}

// PutBlobsMarked stores many blobs, each as PutBlobMarked would, at less
// cost: their chunks are written on workers goroutines (at least one)
// with no sync per blob, then one sync makes all of them durable, and only
// then are their manifests committed, one transaction each. If any blob
// fails before the commits (a read error, a size mismatch, ctx done, a
// full disk, a Badger error), every new chunk is deleted and no blob
// becomes visible. A failure during the commits leaves the blobs
// committed before it visible, and deletes the chunks of the others.
func (s *Store) PutBlobsMarked(ctx context.Context, blobs []BulkBlob, workers int) error {
	for _, b := range blobs {
		if err := checkCall(ctx, b.Key); err != nil {
			return err
		}
		if b.Size < 0 {
			return fmt.Errorf("cache: put blob %q: %w: the size must be known", b.Key, ErrSizeMismatch)
		}
		if err := s.disk.admit(describe(b.Key, b.Size), b.Size, true); err != nil {
			return fmt.Errorf("cache: put blob %q: %w", b.Key, err)
		}
		if err := s.staleIndex(b.Key); err != nil {
			return fmt.Errorf("cache: put blob %q: %w", b.Key, err)
		}
	}
	ms := make([]manifest, len(blobs))
	for i := range ms {
		ms[i].gen = s.beginGen()
	}
	defer func() {
		for _, m := range ms {
			s.endGen(m.gen)
		}
	}()
	err := s.bulkChunks(ctx, blobs, ms, max(workers, 1))
	if err == nil {
		err = s.db.Sync() // chunks durable before the manifests
	}
	done := 0 // manifests committed
	for err == nil && done < len(blobs) {
		if err = s.bulkCommit(ctx, blobs[done], ms[done]); err == nil {
			done++
		}
	}
	if err != nil {
		for _, m := range ms[done:] {
			s.dropGen(m.gen, m.chunks)
		}
		return err
	}
	s.grew()
	return nil
}

// bulkChunks writes the chunks of every blob on workers goroutines into
// the generations of ms, and fills in the rest of ms.
func (s *Store) bulkChunks(ctx context.Context, blobs []BulkBlob, ms []manifest, workers int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(blobs))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, len(blobs)) {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if errs[i] = s.bulkBlob(ctx, blobs[i], &ms[i]); errs[i] != nil {
					cancel() // the first failure ends the others
				}
			}
		})
	}
	for i := range blobs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	// The failure that ended the others, not a cancellation it caused.
	bad := -1
	for i, err := range errs {
		if err != nil && (bad < 0 || errors.Is(errs[bad], context.Canceled) && !errors.Is(err, context.Canceled)) {
			bad = i
		}
	}
	if bad >= 0 {
		what := describe(blobs[bad].Key, blobs[bad].Size)
		return fmt.Errorf("cache: put blob %q: %w", blobs[bad].Key, s.disk.classify(what, errs[bad]))
	}
	return ctx.Err()
}

// bulkBlob writes the chunks of one blob into the generation of m, as
// writeChunks does but without the sync.
func (s *Store) bulkBlob(ctx context.Context, b BulkBlob, m *manifest) error {
	r, err := b.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	what := describe(b.Key, b.Size)
	m.chunkSize, m.mark = int64(s.chunkSize), b.Mark
	pending := s.disk.hold(b.Size)
	defer pending.release()
	bufp := s.getBuf()
	defer s.bufs.Put(bufp)
	buf, h := *bufp, sha256.New()
	for m.size < b.Size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, rerr := io.ReadFull(r, buf[:min(m.chunkSize, b.Size-m.size)])
		if n > 0 {
			if err := pending.admit(what, int64(n)); err != nil {
				return err
			}
			if err := s.setChunk(m.gen, m.chunks, buf[:n]); err != nil {
				return err
			}
			pending.wrote(int64(n))
			h.Write(buf[:n])
			m.chunks++
			m.size += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: read %d bytes, want %d", ErrSizeMismatch, m.size, b.Size)
		}
		if rerr != nil {
			return fmt.Errorf("read: %w", rerr)
		}
	}
	if err := expectEOF(r, b.Size); err != nil {
		return err
	}
	m.stored = s.now()
	h.Sum(m.sum[:0])
	return nil
}

// bulkCommit commits the manifest of one blob whose chunks are durable.
func (s *Store) bulkCommit(ctx context.Context, b BulkBlob, m manifest) error {
	old, err := s.commitManifest(ctx, b.Key, m)
	if err != nil {
		return fmt.Errorf("cache: put blob %q: %w", b.Key, s.disk.classify(describe(b.Key, b.Size), err))
	}
	oldSize := int64(-1)
	if old != nil {
		oldSize = old.size
	}
	s.stats.replace(b.Key, oldSize, m.size)
	if old != nil && old.gen != m.gen {
		s.dropGen(old.gen, old.chunks)
	}
	return nil
}
