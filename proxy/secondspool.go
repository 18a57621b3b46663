package proxy

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
)

// sharedSpools are zips read from the second level and verified whole,
// which the gate serves from their spool file while it stores them in its
// Cache (a large store is slower than the read: the client need not wait
// for it). The zero value is ready to use.
type sharedSpools struct {
	mu sync.Mutex
	m  map[string]*sharedSpool
	wg sync.WaitGroup // the stores in progress
}

// sharedSpool is one verified zip in a spool file.
type sharedSpool struct {
	path    string
	stored  time.Time // when it was verified, for Last-Modified
	readers int       // answers being served from it (guarded by sharedSpools.mu)
	idle    chan struct{}
}

// storeGrace is how long the store of a spooled zip waits for a first
// answer to open it. Decision: the store waits until no answer reads the
// spool, because on two cores Badger's write of a large value competed
// with the answer it was meant to spare (half the gate's CPU in the
// profile of bench 12b); the answer needs only the spool.
const storeGrace = 100 * time.Millisecond

// has reports whether a verified spool of key is being stored.
func (s *sharedSpools) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key] != nil
}

// spoolReader is an answer's reader of a verified spool; Close lets the
// store go on once no answer reads the spool.
type spoolReader struct {
	*os.File
	close func()
}

// Close closes the file and ends this answer's hold on the spool.
func (r *spoolReader) Close() error {
	err := r.File.Close()
	r.close()
	return err
}

// open opens the verified spool of key, or returns nil if there is none.
// A file opened here stays readable after the store removes it. The
// caller must Close it: the store of the spool waits for that.
func (s *sharedSpools) open(key string) (*spoolReader, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.m[key]
	if sp == nil {
		return nil, time.Time{}
	}
	f, err := os.Open(sp.path)
	if err != nil {
		return nil, time.Time{}
	}
	sp.readers++
	var once sync.Once
	return &spoolReader{File: f, close: func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if sp.readers--; sp.readers == 0 {
				select {
				case sp.idle <- struct{}{}:
				default:
				}
			}
		})
	}}, sp.stored
}

// awaitIdle waits until no answer reads sp, after giving a first answer
// storeGrace to open it, or until ctx ends.
func (s *sharedSpools) awaitIdle(ctx context.Context, sp *sharedSpool) {
	grace := time.NewTimer(storeGrace)
	defer grace.Stop()
	select {
	case <-grace.C:
	case <-ctx.Done():
		return
	}
	for {
		s.mu.Lock()
		n := sp.readers
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-sp.idle:
		case <-ctx.Done():
			return
		}
	}
}

// wait waits for the stores in progress (for tests).
func (s *sharedSpools) wait() { s.wg.Wait() }

// spoolShared copies the zip under key from the second level's reader sr
// (which fails unless the bytes match the recorded size and SHA-256) to a
// spool file, and once it is whole and verified, makes it servable and
// stores it in the Cache in the background. On error nothing is kept.
func (g *Gate) spoolShared(ctx context.Context, key string, sr io.Reader, meta SharedMeta) error {
	if meta.Size > maxZipSize {
		return fmt.Errorf("%w: %d bytes, over the zip limit", ErrSharedCorrupt, meta.Size)
	}
	f, err := os.CreateTemp(g.cfg.SpoolDir, "modgate-spool-shared-*.zip")
	if err != nil {
		return fmt.Errorf("spooling: %w", err)
	}
	// Chunk-sized writes: a default 32 KiB copy makes thousands of
	// syscalls for a large zip.
	if _, err := io.CopyBuffer(&spoolWriter{f: f}, sr, make([]byte, 1<<20)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	s := &g.spools
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*sharedSpool{}
	}
	sp := &sharedSpool{path: f.Name(), stored: g.cfg.Now(), idle: make(chan struct{}, 1)}
	s.m[key] = sp
	s.wg.Add(1)
	s.mu.Unlock()
	go g.storeSpooled(key, sp, f, meta)
	return nil
}

// storeSpooled stores the verified spool f of key in the Cache once no
// answer reads it (see storeGrace), then removes it.
func (g *Gate) storeSpooled(key string, sp *sharedSpool, f *os.File, meta SharedMeta) {
	s := &g.spools
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		if s.m[key] == sp {
			delete(s.m, key)
		}
		os.Remove(sp.path)
		s.mu.Unlock()
		f.Close()
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), fetchTimeout) // answers never hold the store longer
	s.awaitIdle(wctx, sp)
	wcancel()
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	_, err := f.Seek(0, io.SeekStart)
	if err == nil {
		err = g.cfg.Cache.PutBlobMarked(ctx, key, f, meta.Size, meta.Mark)
	}
	if err != nil {
		g.log.Warn("a zip from the second level could not be stored in the cache", zap.String("key", key),
			zap.Error(err))
	}
}
