package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/signer"
)

// fileSpec says how one kind of small module file is fetched and checked.
type fileSpec struct {
	ext     string // upstream path suffix
	ctype   string
	mutable bool // list, @latest and .info of a query: cached with a TTL
	// check verifies a fetched body and returns the trust mark to store
	// with it (trustUnknown for kinds that are not checked against the
	// checksum database). ahead is the lookup started with the fetch
	// (see lookAhead), for the kinds checked against the database.
	check func(g *Gate, ctx context.Context, req Request, body []byte, ahead *sumAhead) (byte, error)
}

func specFor(req Request) fileSpec {
	switch req.Kind {
	case KindList:
		return fileSpec{"/@v/list", "text/plain; charset=utf-8", true, checkList}
	case KindLatest:
		return fileSpec{"/@latest", "application/json", true, checkInfo}
	case KindMod:
		return fileSpec{".mod", "text/plain; charset=utf-8", false, checkMod}
	}
	return fileSpec{".info", "application/json", module.CanonicalVersion(req.Version) != req.Version, checkInfo}
}

// serveFile serves list, @latest, .info and .mod, under the policy.
func (g *Gate) serveFile(ctx context.Context, w http.ResponseWriter, r *http.Request, req Request) (outcome, error) {
	var o outcome
	if req.Kind == KindMod || (req.Kind == KindInfo && module.CanonicalVersion(req.Version) == req.Version) {
		ao, err := g.allow(ctx, req.Module, req.Version)
		if o = o.with(ao); err != nil {
			return o, err
		}
	}
	body, lo, err := g.load(ctx, req)
	if o = o.with(lo); err != nil {
		return o, err
	}
	g.prefetchRequires(ctx, req, body, lo.cache)
	body, po, err := g.applyPolicy(ctx, req, body)
	if o = o.with(po); err != nil {
		return o, err
	}
	o.cache = lo.cache
	writeSmall(w, r, specFor(req).ctype, body)
	return o, nil
}

// load returns a verified small module file from the cache, or fetches,
// checks and stores it; a stale copy stands in when the upstream fails.
// The outcome says which, and what the upstream cost.
func (g *Gate) load(ctx context.Context, req Request) ([]byte, outcome, error) {
	spec := specFor(req)
	key := req.cacheKey()
	e, err := g.cfg.Cache.Get(ctx, key)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		if err := g.dropUnreadable(ctx, req, key, err); err != nil {
			return nil, outcome{}, err
		}
		err = cache.ErrNotFound
	}
	trusted := err == nil && (g.trustHolds(req, e.Mark) || g.reverifyMod(ctx, req, key, e.Value))
	switch {
	case trusted && (!spec.mutable || g.cfg.Offline || g.cfg.Now().Sub(e.Stored) < g.cfg.ListTTL):
		return e.Value, outcome{cache: cacheHit}, nil
	case g.cfg.Offline && err == nil:
		return nil, outcome{}, untrustedOffline(req)
	case g.cfg.Offline:
		return nil, outcome{}, g.offlineMiss(ctx, req)
	}
	body, o, ferr := g.shared(ctx, key, g.clustered(req, key, func(ctx context.Context) ([]byte, upstreamTime, error) {
		return g.fetchFile(ctx, req, key, spec)
	}))
	if ferr != nil && trusted && statusOf(ferr) == http.StatusBadGateway {
		g.log.Warn("upstream failed; serving a stale copy", zap.String("key", key), zap.Error(ferr))
		o.cache = cacheStale
		return e.Value, o, nil
	}
	if ferr != nil {
		return nil, o, ferr
	}
	o.cache = cacheMiss
	return body, o, nil
}

// fetchFile fetches, checks and stores a small module file, unless
// another request has stored it since this one missed.
func (g *Gate) fetchFile(ctx context.Context, req Request, key string, spec fileSpec) ([]byte, upstreamTime, error) {
	if e, err := g.cfg.Cache.Get(ctx, key); err == nil && g.trustHolds(req, e.Mark) &&
		(!spec.mutable || g.cfg.Now().Sub(e.Stored) < g.cfg.ListTTL) {
		return e.Value, upstreamTime{}, nil
	}
	var ahead *sumAhead
	if req.Kind == KindMod { // the record's round trips overlap the fetch's
		ahead = g.lookAhead(ctx, req, "/go.mod")
	}
	body, up, err := g.fetchTimed(ctx, req.Kind, "/"+req.escaped+spec.ext)
	if err != nil {
		return nil, up, err
	}
	trust, err := spec.check(g, ctx, req, body, ahead)
	if err != nil {
		return nil, up, err
	}
	if err := g.cfg.Cache.PutMarked(ctx, key, body, trust); err != nil {
		return nil, up, fmt.Errorf("storing %s: %w", key, err)
	}
	g.share(ctx, req, key, body, trust)
	return body, up, nil
}

// fetchTimed fetches a small body and returns the upstream time.
func (g *Gate) fetchTimed(ctx context.Context, kind Kind, path string) ([]byte, upstreamTime, error) {
	start := time.Now()
	b, err := g.up.fetch(ctx, path)
	up := since(start)
	g.cfg.Metrics.fetched(kind, up.d, int64(len(b)))
	return b, up, err
}

// writeSmall writes a whole small body (none for HEAD).
func writeSmall(w http.ResponseWriter, r *http.Request, ctype string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// checkList accepts a version list whose every line is a valid version.
func checkList(_ *Gate, _ context.Context, req Request, body []byte, _ *sumAhead) (byte, error) {
	for _, line := range strings.Split(string(body), "\n") {
		if v := strings.TrimSpace(line); v != "" && (!semver.IsValid(v) || module.Check(req.Module, v) != nil) {
			return 0, fmt.Errorf("%w: upstream list of %s has an invalid version %q", ErrMismatch, req.Module, v)
		}
	}
	return trustUnknown, nil
}

// checkInfo accepts an .info (or @latest) naming a valid version, which for
// a request by exact version must be that version.
func checkInfo(_ *Gate, _ context.Context, req Request, body []byte, _ *sumAhead) (byte, error) {
	var info struct{ Version string }
	if err := json.Unmarshal(body, &info); err != nil {
		return 0, fmt.Errorf("%w: upstream .info of %s is not valid JSON: %v", ErrMismatch, req.Target(), err)
	}
	if module.CanonicalVersion(info.Version) != info.Version || module.Check(req.Module, info.Version) != nil {
		return 0, fmt.Errorf("%w: upstream .info of %s names an invalid version %q",
			ErrMismatch, req.Target(), info.Version)
	}
	if req.Version != "" && module.CanonicalVersion(req.Version) == req.Version && info.Version != req.Version {
		return 0, fmt.Errorf("%w: upstream .info of %s is for version %s", ErrMismatch, req.Target(), info.Version)
	}
	return trustUnknown, nil
}

// checkMod compares a go.mod with the checksum database's line, which
// ahead looks up (nil: a private module, not checked).
func checkMod(g *Gate, ctx context.Context, req Request, body []byte, ahead *sumAhead) (byte, error) {
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(body)), nil
	})
	if err != nil {
		return 0, fmt.Errorf("hashing go.mod: %w", err)
	}
	return g.checkAhead(ctx, ahead, req, "/go.mod", h)
}

// checkSum compares hash with the go.sum line of the verified
// checksum-database record for req (suffix "" for the zip, "/go.mod"), and
// returns how the object is trusted: trustSumDB, or trustPrivate for a
// private module, which is not checked.
func (g *Gate) checkSum(ctx context.Context, req Request, suffix, hash string) (byte, error) {
	if g.private(req.Module) {
		return trustPrivate, nil
	}
	return trustSumDB, matchSum(ctx, g.cfg.Witness.Lines, g.cfg.Witness.Name(), req, suffix, hash)
}

// matchSum compares hash with the proven go.sum line that lines gives
// for req and suffix, naming database db in its errors.
func matchSum(ctx context.Context, lines func(context.Context, module.Version) ([]string, error),
	db string, req Request, suffix, hash string) error {
	got, err := lines(ctx, module.Version{Path: req.Module, Version: req.Version + suffix})
	if err != nil {
		if s := statusOf(err); s == http.StatusNotFound || s == http.StatusGone {
			return fmt.Errorf("%w: %s is not in the checksum database %s", ErrMismatch, req.Target(), db)
		}
		if errors.Is(err, signer.ErrFork) {
			return fmt.Errorf("%w;\nrefusing %s until an operator acts", err, req.Target())
		}
		return fmt.Errorf("checking %s%s against the checksum database: %w", req.Target(), suffix, err)
	}
	what := "zip"
	if suffix != "" {
		what = "go.mod"
	}
	if len(got) == 0 {
		return fmt.Errorf("%w: the checksum database has no %s line for %s", ErrMismatch, what, req.Target())
	}
	if want := strings.TrimPrefix(got[len(got)-1], req.Module+" "+req.Version+suffix+" "); hash != want {
		return fmt.Errorf("%w: upstream %s of %s has hash %s,\nbut the checksum database says %s",
			ErrMismatch, what, req.Target(), hash, want)
	}
	return nil
}

// serveZip serves a module zip from the cache, fetching, verifying and
// storing it first on a miss.
func (g *Gate) serveZip(ctx context.Context, w http.ResponseWriter, r *http.Request, req Request) (outcome, error) {
	o, err := g.allow(ctx, req.Module, req.Version)
	if err != nil {
		return o, err
	}
	key := req.cacheKey()
	result := cacheHit
	blob, err := g.openVerified(ctx, key)
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		if err := g.dropUnreadable(ctx, req, key, err); err != nil {
			return o, err
		}
		err = cache.ErrNotFound
	}
	untrusted := err == nil && !g.trustHolds(req, blob.Mark())
	if untrusted && g.reverifyZip(ctx, req, key, blob) { // closes blob
		untrusted = false
		if blob, err = g.openVerified(ctx, key); err != nil {
			err = cache.ErrNotFound // stored again a moment ago; fetch it as for a miss
		}
	} else if untrusted {
		err = cache.ErrNotFound
	}
	if errors.Is(err, cache.ErrNotFound) {
		switch {
		case g.cfg.Offline && untrusted:
			return o, untrustedOffline(req)
		case g.cfg.Offline:
			return o, g.offlineMiss(ctx, req)
		}
		result = cacheMiss
		mo, b, streamed, merr := g.missZip(ctx, w, r, req, key)
		if o = o.with(mo); streamed {
			o.cache = cacheMiss
			return o, merr
		}
		blob, err = b, merr
	}
	if err != nil {
		return o, err
	}
	defer blob.Close()
	o.cache = result
	w.Header().Set("Content-Type", "application/zip")
	body := &readErr{r: blob}
	http.ServeContent(w, r, "", blob.Stored(), body)
	if body.err != nil && ctx.Err() == nil {
		// Verified a moment ago, unreadable now: the response is cut
		// short (the server closes the connection, the client sees a
		// truncated body), and the next request fetches it again.
		_ = g.dropUnreadable(ctx, req, key, body.err)
	}
	return o, nil
}

// missZip answers a zip that is not cached. A plain GET streams it as it
// arrives (streamed is true, and err says whether the answer must be cut;
// see zipStream). Otherwise it waits for the shared fetch, which stores
// the blob, and opens its own: a Blob is a reader with a position and a
// read transaction, so one cannot serve several callers.
func (g *Gate) missZip(ctx context.Context, w http.ResponseWriter, r *http.Request, req Request,
	key string) (o outcome, blob *cache.Blob, streamed bool, err error) {
	p := g.fetchZipAsync(ctx, req, key)
	if streamable(r) {
		if so, ok, err := g.streamZip(ctx, w, req, key, p); ok {
			return so, nil, true, err
		}
	}
	<-p.done
	if p.err != nil {
		return p.o, nil, false, p.err
	}
	blob, err = g.openVerified(ctx, key)
	return p.o, blob, false, err
}

// openVerified opens the cached zip under key and checks all of it (each
// chunk's presence, length and checksum) before any byte is sent.
func (g *Gate) openVerified(ctx context.Context, key string) (*cache.Blob, error) {
	blob, err := g.cfg.Cache.OpenBlob(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := blob.Verify(); err != nil {
		blob.Close()
		return nil, err
	}
	return blob, nil
}

// dropUnreadable handles a cached object that cannot be read back intact
// (an I/O error, a checksum or SHA-256 mismatch): it is never served but
// deleted, so that it is fetched again. Online it returns nil and the
// caller goes on as for a miss; offline it returns the 504 with the
// reason. An error of the request's own context is returned as it is.
func (g *Gate) dropUnreadable(ctx context.Context, req Request, key string, rerr error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("reading cache: %w", rerr)
	}
	g.log.Warn("cached object unreadable; dropping it", zap.String("key", key), zap.Error(rerr))
	g.cfg.Metrics.readError(req.Kind)
	if err := g.cfg.Cache.Delete(context.WithoutCancel(ctx), key); err != nil {
		g.log.Error("dropping an unreadable cached object", zap.String("key", key), zap.Error(err))
	}
	if g.cfg.Offline {
		return fmt.Errorf("%s: the cached copy was unreadable and is dropped (%v): %w", req.Target(), rerr, ErrOffline)
	}
	return nil
}

// readErr passes reads through and keeps the first error other than EOF.
type readErr struct {
	r   io.ReadSeeker
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *readErr) Seek(off int64, whence int) (int64, error) { return r.r.Seek(off, whence) }

// storedTrusted reports whether a zip whose trust holds is stored under key.
func (g *Gate) storedTrusted(ctx context.Context, req Request, key string) bool {
	b, err := g.cfg.Cache.OpenBlob(ctx, key)
	if err != nil {
		return false
	}
	defer b.Close()
	return g.trustHolds(req, b.Mark())
}
