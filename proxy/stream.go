package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// holdBack is how many bytes at the end of a zip a streamed answer keeps
// until the zip is verified. The client cannot complete the response
// without them, so a failed check, which cuts the connection, always
// leaves it with a short body.
const holdBack = 64 << 10

// zipStream is one upstream fetch of a zip that the requests waiting for
// it read from its spool file while it grows. All but the last holdBack
// bytes are served as they arrive; those follow only once the whole zip is
// verified. If the fetch or the check fails, the answers are cut short,
// so no client ever receives a complete response whose content was not
// verified. Nothing is stored before the check passes.
type zipStream struct {
	fetch context.Context // the fetch's context: a stream whose fetch was given up takes no new answer
	ahead *sumAhead       // the record lookup; a response starts only once it has succeeded
	// shared says the zip comes from the second level (streamShared),
	// whose copy was trusted with mark; ahead is nil then.
	shared bool
	mark   byte
	hold   int64 // the bytes at the end held back until the zip is verified: holdBack, or all of them

	mu       sync.Mutex
	changed  chan struct{} // closed (and replaced) on every change
	name     string        // the spool file; "" until the upstream's headers are in
	size     int64         // the declared length; -1 when none is declared
	written  int64
	state    streamState
	err      error        // why the fetch failed (streamFailed)
	upstream upstreamTime // the download's time, once it has ended
	readers  int          // answers reading the spool now
	opened   int          // answers that have opened it
}

// streamState is how far a zipStream has come.
type streamState int

const (
	streamWaiting  streamState = iota // no headers from the upstream yet
	streamSpooling                    // bytes arriving
	streamVerified                    // whole and verified: the last bytes may go out
	streamFailed                      // the fetch or the check failed: cut the answers
	streamClosed                      // stored (or given up) and the spool removed: read the cache
)

func newZipStream(ctx context.Context, ahead *sumAhead) *zipStream {
	return &zipStream{fetch: ctx, ahead: ahead, size: -1, hold: holdBack, changed: make(chan struct{})}
}

// set changes the stream under its lock and wakes its readers.
func (s *zipStream) set(fn func()) {
	s.mu.Lock()
	fn()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func (s *zipStream) started(name string, size int64) {
	s.set(func() { s.name, s.size, s.state = name, size, streamSpooling })
}

func (s *zipStream) wrote(total int64) { s.set(func() { s.written = total }) }

// fail ends the stream with err, unless it is verified already; its
// readers cut their answers short.
func (s *zipStream) fail(err error) {
	s.set(func() {
		if s.state < streamVerified {
			s.state, s.err = streamFailed, err
		}
	})
}

// verify lets the readers send the last bytes.
func (s *zipStream) verify() { s.set(func() { s.state = streamVerified }) }

// downloaded records the time the download took.
func (s *zipStream) downloaded(up upstreamTime) { s.set(func() { s.upstream = up }) }

// close marks the spool file as removed (closeSpool removes it under the
// lock, so a reader either has it open or reads the cache). A stream that
// had not been verified fails.
func (s *zipStream) close(closeSpool func()) {
	s.set(func() {
		if s.state < streamVerified {
			s.state, s.err = streamFailed, errors.New("the fetch ended before the zip was verified")
		}
		closeSpool()
		if s.state == streamVerified {
			s.state = streamClosed
		}
	})
}

// zipStreams are the zips being fetched, by cache key, so that requests
// for them can read them as they arrive. The zero value is ready to use.
type zipStreams struct {
	mu    sync.Mutex
	m     map[string]*zipStream
	added chan struct{} // closed (and replaced) when a stream is added
}

func (z *zipStreams) add(key string, s *zipStream) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.m == nil {
		z.m = make(map[string]*zipStream)
	}
	z.m[key] = s
	if z.added != nil {
		close(z.added)
		z.added = nil
	}
}

func (z *zipStreams) remove(key string, s *zipStream) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.m[key] == s {
		delete(z.m, key)
	}
}

// get returns the stream of key (nil if none), and a channel closed when
// a stream is next added.
func (z *zipStreams) get(key string) (*zipStream, <-chan struct{}) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.added == nil {
		z.added = make(chan struct{})
	}
	return z.m[key], z.added
}

// await waits until a stream of key that accept takes is there, and
// returns it; it returns nil when done is closed first (the fetch ended
// without one) or ctx ends.
func (z *zipStreams) await(ctx context.Context, key string, done <-chan struct{},
	accept func(*zipStream) bool) *zipStream {
	for {
		s, added := z.get(key)
		if s != nil && accept(s) {
			return s
		}
		select {
		case <-added:
		case <-done:
			if s, _ = z.get(key); s != nil && accept(s) {
				return s
			}
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// wait waits until the stream has reached state at least, or ctx ends.
func (s *zipStream) wait(ctx context.Context, state streamState) error {
	for {
		s.mu.Lock()
		st, ch := s.state, s.changed
		s.mu.Unlock()
		if st >= state {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// open waits for the answer to be able to start: a successful record
// lookup, and a first byte it may send (past the held-back tail, or the
// whole zip verified), so that a fetch that fails before still gets its
// error answer. It returns the spool file open for reading, the zip's
// length, and whether this is the stream's first reader; nil when the
// answer cannot start (no declared length, a failed lookup or fetch, a
// stream already stored), or done or ctx ends first. The caller then
// answers as the fetch ends.
func (s *zipStream) open(ctx context.Context, done <-chan struct{}) (*os.File, int64, bool) {
	for {
		s.mu.Lock()
		st, ch := s.state, s.changed
		canStart := st != streamWaiting && (st != streamSpooling || s.size < 0 || min(s.written, s.size-s.hold) > 0)
		s.mu.Unlock()
		if canStart {
			break
		}
		select {
		case <-ch:
		case <-done:
			return nil, 0, false
		case <-ctx.Done():
			return nil, 0, false
		}
	}
	if s.ahead != nil {
		select {
		case <-s.ahead.done:
		case <-done:
			return nil, 0, false
		case <-ctx.Done():
			return nil, 0, false
		}
		if s.ahead.err != nil {
			return nil, 0, false // the fetch fails with the lookup's error: answer with it
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size < 0 || (s.state != streamSpooling && s.state != streamVerified) {
		return nil, 0, false
	}
	f, err := os.Open(s.name)
	if err != nil {
		return nil, 0, false
	}
	s.readers++
	s.opened++
	return f, s.size, s.opened == 1
}

// release ends the hold of an answer that open let start on the spool.
func (s *zipStream) release() { s.set(func() { s.readers-- }) }

// awaitReaders waits until no answer reads the spool, giving a first answer
// grace to open it, or until ctx ends.
func (s *zipStream) awaitReaders(ctx context.Context, grace time.Duration) {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	graceOver := timer.C
	for {
		s.mu.Lock()
		readers, opened, ch := s.readers, s.opened, s.changed
		s.mu.Unlock()
		if readers == 0 && (opened > 0 || graceOver == nil) {
			return
		}
		select {
		case <-ch:
		case <-graceOver:
			graceOver = nil
		case <-ctx.Done():
			return
		}
	}
}

// copyTo writes the zip from the spool file f to w as it arrives: all but
// the last held-back bytes at once, those only once it is verified. It
// calls flush (if not nil) before it waits for more, so that what was
// written reaches the client rather than w's buffer. It
// returns nil when all of it went out; an error when the fetch or the
// check failed (the answer must then be cut short), w failed or ctx ended.
func (s *zipStream) copyTo(ctx context.Context, w io.Writer, f *os.File, flush func() error) error {
	buf := make([]byte, 256<<10)
	var sent, flushed int64
	for {
		s.mu.Lock()
		st, written, size, hold, ch, ferr := s.state, s.written, s.size, s.hold, s.changed, s.err
		s.mu.Unlock()
		if st == streamFailed {
			return fmt.Errorf("answer cut short after %d of %d bytes: %w", sent, size, ferr)
		}
		limit := written
		if st < streamVerified {
			limit = min(written, size-hold)
		}
		for sent < limit {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), limit-sent)], sent)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return fmt.Errorf("writing the answer: %w", werr)
				}
				sent += int64(n)
			}
			if err != nil && sent < limit {
				return fmt.Errorf("reading the spool file: %w", err)
			}
		}
		if st >= streamVerified && sent == size {
			return nil
		}
		if flush != nil && flushed < sent {
			flush()
			flushed = sent
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// upstreamTime is the time the download took, once it has ended.
func (s *zipStream) upstreamTime() upstreamTime {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstream
}

// streamable reports whether r may be answered from a zip as it arrives:
// a plain GET of the whole zip, from a client of an http.Server (which
// can cut an answer short). HEAD and range requests, and the gate's own
// internal requests (vulnerability database, bundles), wait for the
// stored copy.
func streamable(r *http.Request) bool {
	return r.Method == http.MethodGet && r.Header.Get("Range") == "" &&
		r.Context().Value(http.ServerContextKey) != nil
}

// streamZip answers a plain GET from the zip stream of key while the zip
// arrives (see zipStream). done closes when this request's shared fetch
// has ended. ok is false when the answer did not start (see
// zipStream.open): the caller then waits for the fetch and answers from
// the cache or with the fetch's error. Once ok, the answer is complete and
// verified if err is nil; otherwise the caller must cut it short.
//
// A stream fetched for a private module (not checked against the checksum
// database) serves only requests for which the module is private still.
// A complete answer returns once the zip is stored too (or failed to be),
// so that a client that has its answer finds the zip in the cache.
func (g *Gate) streamZip(ctx context.Context, w http.ResponseWriter, req Request, key string,
	p *pendingFetch) (o outcome, ok bool, err error) {
	// A stream whose fetch was given up (its callers all left, so its
	// flight was cancelled before this request started another) would
	// only cut this answer short: wait for this request's own.
	s := g.streams.await(ctx, key, p.done, func(s *zipStream) bool {
		return s.fetch.Err() == nil &&
			(s.ahead != nil || (s.shared && g.trustHolds(req, s.mark)) || g.private(req.Module))
	})
	if s == nil {
		return o, false, nil
	}
	f, size, first := s.open(ctx, p.done)
	if f == nil {
		return o, false, nil
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	err = s.copyTo(ctx, w, f, http.NewResponseController(w).Flush)
	s.release()
	o = outcome{cache: cacheMiss, waited: !first, upstream: s.upstreamTime()}
	if err != nil {
		return o, true, err
	}
	http.NewResponseController(w).Flush()
	// Wait for the store (bounded by its timeout) even if the client has
	// gone: a graceful shutdown waits for this handler, and so for it.
	s.wait(context.WithoutCancel(ctx), streamClosed)
	return o, true, nil
}

// pendingFetch is a shared fetch that a request started, or joined, in
// the background, so that it can stream the zip meanwhile.
type pendingFetch struct {
	done chan struct{} // closed when o and err are set
	o    outcome
	err  error
}

// fetchZipAsync joins (or starts) the shared fetch of the zip under key
// in the background. The fetch goes on while ctx lasts, as g.shared's do.
func (g *Gate) fetchZipAsync(ctx context.Context, req Request, key string) *pendingFetch {
	p := &pendingFetch{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_, p.o, p.err = g.shared(ctx, key, g.clustered(req, key, func(ctx context.Context) ([]byte, upstreamTime, error) {
			if g.storedTrusted(ctx, req, key) {
				return nil, upstreamTime{}, nil // stored since this request missed
			}
			up, err := g.fetchZip(ctx, req, key)
			return nil, up, err
		}))
	}()
	return p
}

// fetchZip spools the upstream zip to a file while downloading, and
// streams it to the requests waiting for it as it arrives (see
// zipStream). The checksum-database lookup runs meanwhile. Once the whole
// zip is there it is hashed and checked against the record; only then
// can the answers complete, and only then is it stored. It returns the
// time the download took.
func (g *Gate) fetchZip(ctx context.Context, req Request, key string) (upstreamTime, error) {
	if old, _ := g.streams.get(key); old != nil {
		// An earlier fetch of this zip, whose callers have all gone, is
		// still storing it: wait for it rather than fetch again.
		if err := old.wait(ctx, streamFailed); err != nil {
			return upstreamTime{}, err
		}
		if g.storedTrusted(ctx, req, key) {
			return upstreamTime{}, nil
		}
	}
	s := newZipStream(ctx, g.lookAhead(ctx, req, ""))
	g.streams.add(key, s)
	defer g.streams.remove(key, s)
	start := time.Now()
	f, size, err := g.up.spool(ctx, "/"+req.escaped+".zip", g.cfg.SpoolDir, maxZipSize, s)
	up := since(start)
	s.downloaded(up)
	g.cfg.Metrics.fetched(KindZip, up.d, size)
	if err != nil {
		s.fail(err)
		return up, err
	}
	defer s.close(func() {
		f.Close()
		os.Remove(f.Name())
	})
	if err := g.verifyAndStore(ctx, req, key, f, size, s); err != nil {
		s.fail(err)
		return up, err
	}
	return up, nil
}

// verifyAndStore checks the spooled zip f against the record, lets the
// stream's answers complete, and stores the zip.
func (g *Gate) verifyAndStore(ctx context.Context, req Request, key string, f *os.File, size int64,
	s *zipStream) error {
	h, err := hashZip(f.Name())
	if err != nil {
		return fmt.Errorf("%w: upstream zip of %s is not a valid zip: %v", ErrMismatch, req.Target(), err)
	}
	trust, err := g.checkAhead(ctx, s.ahead, req, "", h)
	if err != nil {
		return err
	}
	s.verify()
	// The zip is verified and its answers complete now: store it even if
	// every caller has gone meanwhile, so that the next request hits.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewinding spool file: %w", err)
	}
	if err := g.cfg.Cache.PutBlobMarked(sctx, key, f, size, trust); err != nil {
		err = fmt.Errorf("storing %s: %w", key, err)
		// Streamed answers have completed: this line is all that says so.
		g.log.Warn("a verified zip was not stored", zap.String("key", key), zap.Error(err))
		return err
	}
	g.shareZip(sctx, key, f, size, trust)
	return nil
}
