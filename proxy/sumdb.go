package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/signer"
)

// serveSumDB serves the checksum-database endpoints from the witness.
func (g *Gate) serveSumDB(ctx context.Context, w http.ResponseWriter, r *http.Request, req Request) (outcome, error) {
	if req.DB != g.cfg.Witness.Name() {
		err := fmt.Errorf("%w: modgate serves checksum database %s, not %s", signer.ErrNotFound, g.cfg.Witness.Name(), req.DB)
		return outcome{}, err
	}
	var (
		body  []byte
		err   error
		o     outcome
		ctype = "text/plain; charset=utf-8"
	)
	switch req.Kind {
	case KindSupported:
		writeSmall(w, r, ctype, nil)
		return outcome{cache: cacheHit}, nil
	case KindSumLatest:
		body, o, err = g.sumLatest(ctx)
	case KindLookup:
		if pat := g.privatePattern(req.Module); pat != "" {
			return outcome{}, &PrivateLookupError{Module: req.Module, Pattern: pat, DB: req.DB}
		}
		if o, err = g.allow(ctx, req.Module, req.Version); err != nil {
			return o, err
		}
		var fo outcome
		body, fo, err = g.shared(ctx, "lookup/"+req.escaped, func(ctx context.Context) ([]byte, upstreamTime, error) {
			b, err := g.cfg.Witness.Lookup(ctx, module.Version{Path: req.Module, Version: req.Version})
			return b, upstreamTime{}, err
		})
		o = o.with(fo)
	case KindTile:
		ctype = "application/octet-stream"
		body, o, err = g.shared(ctx, "tile/"+req.Tile.Path(), func(ctx context.Context) ([]byte, upstreamTime, error) {
			b, err := g.cfg.Witness.Tile(ctx, req.Tile)
			return b, upstreamTime{}, err
		})
	}
	if err != nil {
		return o, err
	}
	if o.cache == "" {
		o.cache = cacheHit
		if o.upstream.calls > 0 { // the witness read the upstream for this answer
			o.cache = cacheMiss
		}
	}
	writeSmall(w, r, ctype, body)
	return o, nil
}

// sumLatest witnesses and co-signs the upstream's newest tree head; if the
// upstream cannot be read it serves the newest witnessed one (stale). A
// fork or a failed verification is an error.
func (g *Gate) sumLatest(ctx context.Context) ([]byte, outcome, error) {
	clock := &remoteClock{}
	ctx = withRemoteClock(ctx, clock)
	var o outcome
	body, _, err := g.cfg.Witness.Latest(ctx)
	if err != nil && !errors.Is(err, signer.ErrFork) && !errors.Is(err, signer.ErrVerify) {
		g.log.Warn("cannot witness the upstream's latest tree head; serving the newest witnessed one", zap.Error(err))
		body, _, err = g.cfg.Witness.Current(ctx)
		o.cache = cacheStale
	}
	o.upstream = clock.total()
	return body, o, err
}

// PrivateLookupError refuses a checksum-database lookup of a module that
// matches a private pattern: forwarding it would disclose the module's name
// to the public database. It wraps ErrRefused (403).
type PrivateLookupError struct {
	Module  string // the module path
	Pattern string // the private pattern it matches
	DB      string // the database asked, such as sum.golang.org
}

func (e *PrivateLookupError) Error() string {
	return fmt.Sprintf("%s is private (pattern %s): modgate does not look it up in the public checksum database %s, "+
		"which would learn its name;\nset GONOSUMDB=%s on clients, so that the go command does not ask",
		e.Module, e.Pattern, e.DB, e.Pattern)
}

// Unwrap returns ErrRefused.
func (e *PrivateLookupError) Unwrap() error { return ErrRefused }

// SumDBRemote reads the upstream checksum database for the witness. Its
// base URL is given, or found on first use: the upstream module proxy's
// /sumdb/<name> when it answers "supported", else https://<name>.
type SumDBRemote struct {
	// Metrics, if set, records the upstream fetches.
	Metrics *Metrics
	name    string
	proxy   *upstream
	mu      sync.Mutex
	db      *upstream // resolved
	// tiles shares the reads of one tile among the lookups that want it at
	// the same time (each still authenticates what it gets).
	tiles flights[[]byte]
}

var _ signer.Remote = (*SumDBRemote)(nil)

// NewSumDBRemote returns the remote for database name. base may be nil to
// find it through the module proxy upstream.
func NewSumDBRemote(name string, base, proxyURL *url.URL, client *http.Client, offline bool) *SumDBRemote {
	r := &SumDBRemote{name: name, proxy: &upstream{base: proxyURL, client: client, offline: offline}}
	if base != nil {
		r.db = &upstream{base: base, client: client, offline: offline}
	}
	return r
}

// ReadRemote implements signer.Remote. Concurrent reads of one tile
// are one upstream request.
func (r *SumDBRemote) ReadRemote(ctx context.Context, path string) ([]byte, error) {
	db, err := r.resolve(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	read := func(ctx context.Context) ([]byte, error) {
		b, err := db.fetch(ctx, path)
		r.Metrics.fetched("sumdb", time.Since(start), int64(len(b)))
		return b, err
	}
	var b []byte
	if strings.HasPrefix(path, "/tile/") {
		b, _, err = r.tiles.do(ctx, path, fetchTimeout, read)
	} else {
		b, err = read(ctx)
	}
	addRemote(ctx, since(start))
	return b, err
}

// resolve finds the database URL once; a failed probe is tried again later.
func (r *SumDBRemote) resolve(ctx context.Context) (*upstream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db != nil {
		return r.db, nil
	}
	if r.proxy.offline {
		return nil, ErrOffline
	}
	viaProxy := *r.proxy.base
	viaProxy.Path = strings.TrimSuffix(viaProxy.Path, "/") + "/sumdb/" + r.name
	probe := &upstream{base: &viaProxy, client: r.proxy.client}
	_, err := probe.fetch(ctx, "/supported")
	var ue *UpstreamError
	switch {
	case err == nil:
		r.db = probe
	case errors.As(err, &ue) && ue.NotFound():
		r.db = &upstream{base: &url.URL{Scheme: "https", Host: r.name}, client: r.proxy.client}
	default:
		return nil, fmt.Errorf("finding the checksum database %s: %w", r.name, err)
	}
	return r.db, nil
}

// URL is the resolved database URL, or "" before it is known.
func (r *SumDBRemote) URL() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.db == nil {
		return ""
	}
	return redact(r.db.base)
}
