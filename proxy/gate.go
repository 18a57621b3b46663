package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/audit"
	"github.com/modgate/modgate/proxy/egress"
)

// Cache is the store of verified objects. *cache.Store satisfies it.
// Get and OpenBlob return an error wrapping cache.ErrNotFound on a miss;
// PutBlobMarked makes a blob visible only once it is stored whole. The
// mark stored with an object (Entry.Mark, Blob.Mark) says how it was
// trusted (see trustHolds).
type Cache interface {
	Get(ctx context.Context, key string) (cache.Entry, error)
	PutMarked(ctx context.Context, key string, value []byte, mark byte) error
	OpenBlob(ctx context.Context, key string) (*cache.Blob, error)
	PutBlobMarked(ctx context.Context, key string, r io.Reader, size int64, mark byte) error
	// Delete drops an object that could not be read back intact.
	Delete(ctx context.Context, key string) error
}

// Witness answers checksum-database requests from verified data.
// *signer.Witness satisfies it.
type Witness interface {
	// Name is the database name, such as "sum.golang.org".
	Name() string
	// Lookup returns a verified record and a co-signed note containing it:
	// the checksum database's answer on the wire.
	Lookup(ctx context.Context, m module.Version) ([]byte, error)
	// Lines returns the go.sum lines of m proven to be in a witnessed tree,
	// as sumdb.Client.Lookup does (m.Version may end in "/go.mod"). It
	// signs nothing.
	Lines(ctx context.Context, m module.Version) ([]string, error)
	// Tile returns a tile authenticated against a witnessed tree.
	Tile(ctx context.Context, t tlog.Tile) ([]byte, error)
	// Latest witnesses the upstream's newest tree head and co-signs it.
	Latest(ctx context.Context) ([]byte, tlog.Tree, error)
	// Current co-signs the newest witnessed tree head without the upstream.
	Current(ctx context.Context) ([]byte, tlog.Tree, error)
	// FirstSeen returns when the witness first saw a tree head holding
	// record index, and that head's size; ok is false for a record already
	// in the first tree head it saw.
	FirstSeen(index int64) (t time.Time, size int64, ok bool)
	// StoredRecord returns the index of the verified record of m that is
	// stored, without the upstream; ok is false when none is.
	StoredRecord(ctx context.Context, m module.Version) (index int64, ok bool, err error)
}

// Config configures a Gate. Upstream, Cache and Witness are required; the
// zero values of the others mean the defaults.
type Config struct {
	Upstream   *url.URL     // the upstream module proxy
	HTTPClient *http.Client // for upstream fetches; nil means a client with timeouts
	Cache      Cache
	Witness    Witness
	// Intercept lists the hosts whose CONNECTs are intercepted.
	// Empty means proxy.golang.org and sum.golang.org.
	Intercept []string
	// Private lists module path patterns (as GONOSUMDB) that are not
	// checked against the public checksum database.
	Private []string
	Offline bool
	// ListTTL is how long list and @latest answers are fresh. 0 means one minute.
	ListTTL  time.Duration
	SpoolDir string      // for zips while they download; "" means os.TempDir()
	Logger   *zap.Logger // nil means zap.NewNop()
	Metrics  *Metrics    // nil records nothing
	// Policy returns the module policy in force; nil allows everything.
	Policy func() *policy.Policy
	// Audit, if set, records would-be denials of report mode.
	Audit *audit.Log
	// Public are served at PublicPrefix on the GOPROXY endpoint (not
	// through interception), so that a client can fetch the CA and the
	// verifier key from the proxy's own address.
	Public []PublicFile
	Now    func() time.Time
	// Vuln configures the mirror of the Go vulnerability database (vuln.go).
	Vuln VulnConfig

	// SecondLevel, with --cluster-db, holds the verified objects the gates
	// of a cluster share; nil means a single gate. Leases, if set, makes
	// one gate of the cluster fetch each object (see clustered).
	SecondLevel SecondLevel
	Leases      FetchLeases

	// Prefetch is the number of workers that fetch, ahead of the client,
	// the go.mod files a go.mod fetched for a client requires (prefetch.go,
	// run by RunPrefetch); 0 means none.
	Prefetch int
}

// DefaultIntercept is the default list of intercepted hosts.
var DefaultIntercept = []string{"proxy.golang.org", "sum.golang.org", VulnHost}

// Gate is the pipeline behind both the intercepting proxy and the GOPROXY
// endpoint: it serves module files and checksum-database data.
type Gate struct {
	cfg   Config
	up    *upstream
	log   *zap.Logger
	group flights[fetchResult]
	// streams are the zips being fetched, which requests read as they arrive.
	streams zipStreams

	wouldMu   sync.Mutex
	wouldDeny map[string]time.Time // last audit of a would-be denial, by target and rule

	vuln vulnMirror // the vulnerability database in force (vuln.go)

	prefetch prefetcher // go.mod files to fetch ahead (prefetch.go)
}

// fetchTimeout bounds one shared upstream fetch (a stall ends it sooner).
const fetchTimeout = 10 * time.Minute

// New returns a Gate for cfg.
func New(cfg Config) (*Gate, error) {
	if cfg.Upstream == nil || cfg.Cache == nil || cfg.Witness == nil {
		return nil, errors.New("proxy: Upstream, Cache and Witness are required")
	}
	if cfg.Upstream.Scheme != "https" && cfg.Upstream.Scheme != "http" {
		return nil, fmt.Errorf("proxy: upstream %s: want an http or https URL", redact(cfg.Upstream))
	}
	if len(cfg.Intercept) == 0 {
		cfg.Intercept = DefaultIntercept
	}
	if cfg.ListTTL == 0 {
		cfg.ListTTL = time.Minute
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient(nil)
	}
	up := &upstream{base: cfg.Upstream, client: cfg.HTTPClient, offline: cfg.Offline}
	return &Gate{cfg: cfg, up: up, log: cfg.Logger}, nil
}

// metrics returns the gate's metrics (nil records nothing), which the
// Server shares for its CONNECT counts.
func (g *Gate) metrics() *Metrics { return g.cfg.Metrics }

// Intercepts reports whether CONNECTs to host are intercepted.
func (g *Gate) Intercepts(host string) bool {
	return slices.Contains(g.cfg.Intercept, strings.ToLower(host))
}

// ServeHTTP serves a GOPROXY or checksum-database request, direct or
// decrypted from an intercepted connection, and logs it in one line.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !intercepted(r.Context()) && g.servePublic(w, r) {
		return
	}
	if g.serveVuln(w, r) { // the vulnerability database (vuln.go)
		return
	}
	start := time.Now()
	lw := &logWriter{ResponseWriter: w}
	req, err := g.route(r)
	var o outcome
	if err == nil {
		ctx := r.Context()
		switch req.Kind {
		case KindSupported, KindSumLatest, KindLookup, KindTile:
			o, err = g.serveSumDB(ctx, lw, r, req)
		case KindZip:
			o, err = g.serveZip(ctx, lw, r, req)
		default:
			o, err = g.serveFile(ctx, lw, r, req)
		}
	}
	if err != nil && lw.status != 0 {
		// A streamed zip whose fetch or check failed: cut the answer short,
		// so that the client never completes it.
		g.logRequest(lw, r, req, o, err, start)
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		writeError(lw, err)
	}
	g.logRequest(lw, r, req, o, err, start)
}

// route checks the method and parses (host, path) into a Request.
func (g *Gate) route(r *http.Request) (Request, error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return Request{}, badRequest("method %s not allowed: only GET and HEAD", r.Method)
	}
	if intercepted(r.Context()) { // decrypted from an intercepted CONNECT
		t, err := egress.ParseTarget(r.Host, 443)
		if err != nil {
			return Request{}, badRequest("host %q is not intercepted", r.Host)
		}
		if !g.Intercepts(t.Host) {
			return Request{}, badRequest("host %q is not intercepted", t.Host)
		}
		if t.Host == g.cfg.Witness.Name() {
			return routeSumDB(t.Host, r.URL.Path)
		}
	}
	return parsePath(r.URL.Path)
}

// interceptedKey marks the context of requests decrypted from an
// intercepted CONNECT.
type interceptedKey struct{}

// intercepted reports whether a request's context is that of a request
// decrypted from an intercepted CONNECT (rather than a direct GOPROXY
// request, over plain HTTP or TLS).
func intercepted(ctx context.Context) bool {
	v, _ := ctx.Value(interceptedKey{}).(bool)
	return v
}

// fetchResult is what a shared fetch returns to every caller.
type fetchResult struct {
	body     []byte
	upstream upstreamTime
}

// shared runs fn once for all concurrent callers with the same key, in a
// context that one caller's cancellation does not end, but that ends when
// no caller waits for it any more, or after fetchTimeout. Every caller
// gets fn's body and error, and an outcome: the upstream time of the
// fetch (fn's own, plus the witness's reads in its context), and whether
// this caller waited on another's fetch rather than starting it.
func (g *Gate) shared(ctx context.Context, key string,
	fn func(ctx context.Context) ([]byte, upstreamTime, error)) ([]byte, outcome, error) {
	res, started, err := g.group.do(ctx, key, fetchTimeout, func(ctx context.Context) (fetchResult, error) {
		clock := &remoteClock{}
		body, up, err := fn(withRemoteClock(ctx, clock))
		return fetchResult{body: body, upstream: up.plus(clock.total())}, err
	})
	return res.body, outcome{waited: !started, upstream: res.upstream}, err
}

// private reports whether path skips the public checksum database, by
// the configured patterns or the policy's.
func (g *Gate) private(path string) bool { return g.privatePattern(path) != "" }

// privatePattern returns the configured or policy pattern that makes path
// private, or "" if none does.
func (g *Gate) privatePattern(path string) string {
	patterns := g.cfg.Private
	if p := g.policy(); p != nil {
		patterns = append(slices.Clip(patterns), p.Private...)
	}
	for _, pat := range patterns {
		if module.MatchPrefixPatterns(pat, path) {
			return pat
		}
	}
	return ""
}
