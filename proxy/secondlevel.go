package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
)

// SecondLevel is a store of verified objects that the gates of a cluster
// share, behind each gate's own Cache (issue 12). It holds what it is
// given: a gate puts only objects it has verified, with the SHA-256 of
// their bytes and their trust mark, and checks every byte it reads back
// against that SHA-256 before it stores the object in its Cache, from
// which alone it serves. cluster.Objects keeps the objects in PostgreSQL
// (cmd/modgate adapts it); an S3-compatible store could keep them instead.
type SecondLevel interface {
	// Open returns a reader over the object stored under key, and what was
	// recorded with it; found is false when none is. The caller closes r.
	Open(ctx context.Context, key string) (r io.ReadCloser, meta SharedMeta, found bool, err error)
	// Put stores meta.Size bytes read from r under key, replacing any
	// object there, so that other gates see it whole or not at all. It
	// stores nothing and fails when r does not end after meta.Size bytes
	// that hash to meta.SHA256.
	Put(ctx context.Context, key string, r io.Reader, meta SharedMeta) error
}

// SharedMeta is what the second level records with an object.
type SharedMeta struct {
	Size   int64
	SHA256 [sha256.Size]byte
	Mark   byte // the trust mark (trustSumDB, ...) the verifying gate stored it with
	// ChunksChecked, from Open, says the reader checks each part of the
	// object against a SHA-256 recorded for that part before it returns
	// it: a zip may then be streamed as it is read, its last bytes held
	// back until the whole matches SHA256. Otherwise the gate serves none
	// of it before the whole matches. Put ignores it.
	ChunksChecked bool
}

// FetchLeases makes one gate of a cluster fetch an object from the
// upstream while the others wait for it. *cluster.Leases satisfies it.
type FetchLeases interface {
	// TryAcquire takes the lease on key if no other gate holds it, and
	// returns the function that releases it, to be called once the object
	// is stored (or its fetch failed). The lease lasts until then, or
	// until a period after its gate died. When another gate holds it,
	// release is nil and holder names that gate. It does not wait.
	TryAcquire(ctx context.Context, key string) (release func(), holder string, err error)
}

// ErrSharedCorrupt means an object read from the second level does not
// match the size or SHA-256 recorded with it. It is never stored or
// served: the gate fetches the object again.
var ErrSharedCorrupt = errors.New("object from the second level does not match its recorded SHA-256")

// How often a gate looks again for an object another gate is fetching.
const (
	leasePollMin = 10 * time.Millisecond
	leasePollMax = 200 * time.Millisecond
)

// fetchFunc is a gate's fetch, verify and store of one object.
type fetchFunc = func(ctx context.Context) ([]byte, upstreamTime, error)

// shareable reports whether req's object goes through the second level:
// the immutable objects, .mod and .zip (verified against the checksum
// database or private) and the .info of an exact version.
func shareable(req Request) bool {
	switch req.Kind {
	case KindMod, KindZip:
		return true
	case KindInfo:
		return module.CanonicalVersion(req.Version) == req.Version
	}
	return false
}

// clustered wraps fetch, the fetch of req's object under key, for a
// cluster: an object another gate verified is read from the second level
// into the Cache instead; otherwise the gate that takes the fetch lease
// fetches (and fetch stores the object in the second level, see share)
// while the others wait for it to appear, or for the lease to end. With
// no second level, or for an object it does not hold, fetch is returned
// as it is. The database failing never fails a request here: the gate
// then fetches by itself.
func (g *Gate) clustered(req Request, key string, fetch fetchFunc) fetchFunc {
	if g.cfg.SecondLevel == nil || !shareable(req) {
		return fetch
	}
	return func(ctx context.Context) ([]byte, upstreamTime, error) {
		poll := leasePollMin
		for {
			if body, ok := g.fromSecondLevel(ctx, req, key); ok {
				return body, upstreamTime{}, nil
			}
			if g.cfg.Leases == nil {
				return fetch(ctx)
			}
			release, holder, err := g.cfg.Leases.TryAcquire(ctx, key)
			if err != nil {
				g.log.Warn("cluster fetch lease unavailable; fetching without it", zap.String("key", key), zap.Error(err))
				return fetch(ctx)
			}
			if release != nil {
				defer release()
				// Stored by the gate whose lease ended a moment ago?
				if body, ok := g.fromSecondLevel(ctx, req, key); ok {
					return body, upstreamTime{}, nil
				}
				return fetch(ctx)
			}
			g.log.Debug("waiting for another gate's fetch", zap.String("key", key), zap.String("holder", holder))
			select {
			case <-ctx.Done():
				return nil, upstreamTime{}, ctx.Err()
			case <-time.After(poll):
			}
			poll = min(2*poll, leasePollMax)
		}
	}
}

// fromSecondLevel copies the object under key from the second level into
// the Cache, checking all of it against its recorded SHA-256 first, and
// returns the body of a small one. A zip is streamed to the requests
// waiting for it as it is read, and stored in the Cache after (see
// streamShared). ok is false when the second level has no copy whose trust
// holds here, or a copy that fails the check, or fails: the caller then
// fetches as for a miss (answers already streaming are cut short).
func (g *Gate) fromSecondLevel(ctx context.Context, req Request, key string) (body []byte, ok bool) {
	r, meta, found, err := g.cfg.SecondLevel.Open(ctx, key)
	if err != nil {
		g.log.Warn("reading the second level", zap.String("key", key), zap.Error(err))
		return nil, false
	}
	if !found {
		return nil, false
	}
	defer r.Close()
	if !g.trustHolds(req, meta.Mark) {
		return nil, false
	}
	sr := &sumReader{r: r, want: meta, h: sha256.New()}
	if req.Kind == KindZip {
		err = g.streamShared(ctx, key, sr, meta)
	} else {
		if meta.Size > maxSmallBody {
			err = fmt.Errorf("%w: %d bytes, over the limit of small files", ErrSharedCorrupt, meta.Size)
		} else if body, err = io.ReadAll(sr); err == nil {
			err = g.cfg.Cache.PutMarked(ctx, key, body, meta.Mark)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("object from the second level not stored; fetching it again", zap.String("key", key),
				zap.Error(err))
		}
		return nil, false
	}
	g.log.Debug("object copied from the second level", zap.String("key", key), zap.Int64("size", meta.Size))
	return body, true
}

// sumReader passes want.Size bytes through and, where r ends, reports
// io.EOF only if exactly that many bytes were read and they hash to
// want.SHA256; otherwise an error wrapping ErrSharedCorrupt.
type sumReader struct {
	r    io.Reader
	want SharedMeta
	h    hash.Hash
	n    int64
}

func (s *sumReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	if s.n += int64(n); s.n > s.want.Size {
		return n, fmt.Errorf("%w: more than the %d bytes recorded", ErrSharedCorrupt, s.want.Size)
	}
	if !errors.Is(err, io.EOF) {
		return n, err
	}
	if s.n != s.want.Size {
		return n, fmt.Errorf("%w: %d bytes, not the %d recorded", ErrSharedCorrupt, s.n, s.want.Size)
	}
	if got := s.h.Sum(nil); string(got) != string(s.want.SHA256[:]) {
		return n, fmt.Errorf("%w: its bytes hash to %x, not %x", ErrSharedCorrupt, got, s.want.SHA256)
	}
	return n, io.EOF
}

// share puts a small object just verified and stored in the Cache into
// the second level, for the other gates. A failure is logged: this gate
// serves the object all the same, and the others fetch it themselves.
func (g *Gate) share(ctx context.Context, req Request, key string, body []byte, mark byte) {
	if g.cfg.SecondLevel == nil || !shareable(req) {
		return
	}
	meta := SharedMeta{Size: int64(len(body)), SHA256: sha256.Sum256(body), Mark: mark}
	g.put(ctx, key, bytes.NewReader(body), meta)
}

// shareZip puts a zip just verified and stored in the Cache under key into
// the second level, reading it from the verified spool file f. The
// SHA-256 is the one the Cache recorded while it stored the same file,
// and the second level refuses the bytes unless they hash to it.
func (g *Gate) shareZip(ctx context.Context, key string, f io.ReadSeeker, size int64, mark byte) {
	if g.cfg.SecondLevel == nil {
		return
	}
	blob, err := g.cfg.Cache.OpenBlob(ctx, key)
	if err != nil {
		g.log.Warn("not shared with the second level", zap.String("key", key), zap.Error(err))
		return
	}
	sum := blob.SHA256()
	blob.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		g.log.Warn("not shared with the second level", zap.String("key", key), zap.Error(err))
		return
	}
	g.put(ctx, key, f, SharedMeta{Size: size, SHA256: sum, Mark: mark})
}

func (g *Gate) put(ctx context.Context, key string, r io.Reader, meta SharedMeta) {
	start := time.Now()
	if err := g.cfg.SecondLevel.Put(ctx, key, r, meta); err != nil {
		g.log.Warn("not shared with the second level", zap.String("key", key), zap.Error(err))
		return
	}
	g.log.Debug("object shared with the second level", zap.String("key", key), zap.Int64("size", meta.Size),
		zap.Duration("took", time.Since(start)))
}
