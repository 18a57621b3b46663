package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/cache/bundle"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/policy/vuln"
)

// Defaults of the vulnerability database mirror (VulnConfig).
const (
	DefaultVulnModule  = "golang.org/x/vulndb"
	DefaultVulnRefresh = 6 * time.Hour
	// VulnHost is the host of the Go vulnerability database that the gate
	// intercepts and answers from its mirror.
	VulnHost = "vuln.go.dev"
	// VulnPrefix is where the GOPROXY endpoint serves the mirror
	// (govulncheck -db http://gate:3128/vuln).
	VulnPrefix = "/vuln/"
)

// ErrNoVulnDB is wrapped by the answer to a vulnerability database request
// while the gate holds none.
var ErrNoVulnDB = errors.New("no vulnerability database built yet")

// VulnConfig configures the gate's mirror of the Go vulnerability
// database, built from the module that holds it, fetched through the gate
// itself. The zero value means the defaults.
type VulnConfig struct {
	// Module is the module of the database; "" means DefaultVulnModule.
	Module string
	// Version pins a version of it; "" means the newest the gate can get
	// (offline: the newest it holds).
	Version string
	// Refresh is how often it looks for a newer version; 0 means
	// DefaultVulnRefresh. An offline gate builds once.
	Refresh time.Duration
}

// VulnStatus is what the mirror holds and how its last refresh went.
type VulnStatus struct {
	// DB is the database in force (its source, counts and skips); nil
	// before the first build.
	DB *vuln.DB `json:"db,omitempty"`
	// LastRefresh is when the last refresh ended, and LastOutcome how:
	// "built", "unchanged" or "failed" (LastError says why).
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	LastOutcome string    `json:"last_outcome,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	// Refreshes counts refreshes by outcome since start.
	Refreshes map[string]int `json:"refreshes,omitempty"`
}

// vulnMirror is the gate's database in force and its status.
type vulnMirror struct {
	db      atomic.Pointer[vuln.DB]
	refresh sync.Mutex // one refresh at a time
	mu      sync.Mutex
	status  VulnStatus
}

// VulnDB returns the vulnerability database in force, or nil.
func (g *Gate) VulnDB() *vuln.DB { return g.vuln.db.Load() }

// VulnStatus returns the mirror's status.
func (g *Gate) VulnStatus() VulnStatus {
	g.vuln.mu.Lock()
	defer g.vuln.mu.Unlock()
	st := g.vuln.status
	st.DB = g.vuln.db.Load()
	st.Refreshes = make(map[string]int, len(g.vuln.status.Refreshes))
	for k, v := range g.vuln.status.Refreshes {
		st.Refreshes[k] = v
	}
	return st
}

// RunVuln builds the mirror at once and then every VulnConfig.Refresh
// (once only when offline), until ctx ends. A failed refresh is logged
// and keeps the database in force.
func (g *Gate) RunVuln(ctx context.Context) {
	every := g.cfg.Vuln.Refresh
	if every <= 0 {
		every = DefaultVulnRefresh
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := g.RefreshVuln(ctx); err != nil && ctx.Err() == nil {
			g.log.Warn("vulnerability database refresh failed; keeping the one in force", zap.Error(err))
		}
		if g.cfg.Offline {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshVuln fetches the newest (or the pinned) version of the database
// module through the gate's own pipeline (policy, verification, cache),
// builds it and swaps it in atomically. A version already in force is
// not built again. On failure the database in force stays.
func (g *Gate) RefreshVuln(ctx context.Context) error {
	g.vuln.refresh.Lock()
	defer g.vuln.refresh.Unlock()
	if g.vuln.db.Load() == nil {
		g.restoreVuln(ctx)
	}
	db, err := g.buildVuln(ctx)
	outcome := "built"
	switch {
	case err != nil:
		outcome = "failed"
	case db == nil:
		outcome = "unchanged"
	default:
		g.vuln.db.Store(db)
		g.rememberVuln(ctx, db.Source)
		fields := []zap.Field{zap.String("module", db.Source.Module), zap.String("version", db.Source.Version),
			zap.Time("commit_time", db.Source.Time), zap.Int("entries", db.Entries), zap.Int("skipped", db.Skipped)}
		g.log.Info("vulnerability database in force", fields...)
		for _, s := range db.Skips {
			g.log.Warn("vulnerability database entry skipped", zap.String("file", s.File), zap.String("reason", s.Reason))
		}
	}
	g.vuln.mu.Lock()
	defer g.vuln.mu.Unlock()
	st := &g.vuln.status
	st.LastRefresh, st.LastOutcome, st.LastError = g.cfg.Now(), outcome, ""
	if err != nil {
		st.LastError = err.Error()
	}
	if st.Refreshes == nil {
		st.Refreshes = map[string]int{}
	}
	st.Refreshes[outcome]++
	return err
}

// buildVuln builds the database of the version to use, or returns nil
// when that version is in force already.
func (g *Gate) buildVuln(ctx context.Context) (*vuln.DB, error) {
	mod := g.cfg.Vuln.Module
	if mod == "" {
		mod = DefaultVulnModule
	}
	vers := g.cfg.Vuln.Version
	if vers == "" {
		v, err := g.newestVersion(ctx, mod)
		if err != nil {
			return nil, err
		}
		vers = v
	}
	if cur := g.vuln.db.Load(); cur != nil && cur.Source.Module == mod && cur.Source.Version == vers {
		return nil, nil
	}
	return g.buildVersion(ctx, mod, vers)
}

// vulnInForceKey is the cache key of the module version the database in
// force was built from, so that a restarted (or offline) gate builds the
// same one again from its cache before it looks for a newer one.
const vulnInForceKey = "vulndb/in-force"

// rememberVuln stores the source of the database in force.
func (g *Gate) rememberVuln(ctx context.Context, src vuln.Source) {
	if err := g.cfg.Cache.PutMarked(context.WithoutCancel(ctx), vulnInForceKey,
		[]byte(src.Module+"@"+src.Version), trustUnknown); err != nil {
		g.log.Warn("cannot remember the vulnerability database version", zap.Error(err))
	}
}

// restoreVuln builds the database from the version that was in force
// before a restart, if the cache says which one and still holds it.
func (g *Gate) restoreVuln(ctx context.Context) {
	e, err := g.cfg.Cache.Get(ctx, vulnInForceKey)
	if err != nil {
		return
	}
	mod, vers, ok := strings.Cut(string(e.Value), "@")
	if !ok || (g.cfg.Vuln.Version != "" && g.cfg.Vuln.Version != vers) {
		return
	}
	db, err := g.buildVersion(ctx, mod, vers)
	if err != nil {
		g.log.Warn("cannot rebuild the previous vulnerability database", zap.String("version", vers), zap.Error(err))
		return
	}
	g.vuln.db.Store(db)
	g.log.Info("vulnerability database restored", zap.String("version", vers), zap.Int("entries", db.Entries))
}

// buildVersion fetches mod@vers through the gate and builds its database.
func (g *Gate) buildVersion(ctx context.Context, mod, vers string) (*vuln.DB, error) {
	info, err := g.getInternal(ctx, KindInfo, mod, vers)
	if err != nil {
		return nil, err
	}
	t, err := parseInfoTime(mod, vers, info)
	if err != nil {
		return nil, err
	}
	if module.IsPseudoVersion(vers) {
		if pt, err := module.PseudoVersionTime(vers); err == nil && t.IsZero() {
			t = pt
		}
	}
	f, size, err := g.spoolInternal(ctx, mod, vers)
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return vuln.Build(f, size, vuln.Source{Module: mod, Version: vers, Time: t.UTC()})
}

// blobScanner lists the blobs (zips) a cache holds. *cache.Store
// satisfies it; fn gets every key that starts with prefix.
type blobScanner interface {
	ScanBlobs(ctx context.Context, prefix string, fn func(key string, info cache.BlobInfo) error) error
}

var _ blobScanner = (*cache.Store)(nil)

// newestHeld is the newest version of mod whose zip the cache holds (a
// bundle brings zips, not always the version list), or "".
func (g *Gate) newestHeld(ctx context.Context, mod string) string {
	bs, ok := g.cfg.Cache.(blobScanner)
	esc, err := module.EscapePath(mod)
	if !ok || err != nil {
		return ""
	}
	prefix := "zip/" + esc + "/@v/"
	newest := ""
	err = bs.ScanBlobs(ctx, prefix, func(key string, _ cache.BlobInfo) error {
		if v, err := module.UnescapeVersion(strings.TrimPrefix(key, prefix)); err == nil && semver.Compare(v, newest) > 0 {
			newest = v
		}
		return nil
	})
	if err != nil {
		g.log.Warn("cannot list the vulnerability database versions held", zap.Error(err))
	}
	return newest
}

// refreshVulnAfterImport refreshes the mirror when an imported bundle
// brought a zip of the database module, so that an offline gate uses it at
// once; a failure is logged and keeps the database in force.
func (g *Gate) refreshVulnAfterImport(ctx context.Context, mods []bundle.Module) {
	mod := cmp.Or(g.cfg.Vuln.Module, DefaultVulnModule)
	if !slices.ContainsFunc(mods, func(m bundle.Module) bool { return m.Path == mod && m.Zip }) {
		return
	}
	if err := g.RefreshVuln(ctx); err != nil {
		g.log.Warn("vulnerability database refresh after a bundle import failed; keeping the one in force",
			zap.Error(err))
	}
}

// newestVersion is, offline, the newest version the cache holds; else
// the newest in the module's (policy-filtered) list, else its @latest.
func (g *Gate) newestVersion(ctx context.Context, mod string) (string, error) {
	if g.cfg.Offline {
		if v := g.newestHeld(ctx, mod); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%s: no version held in the cache: %w", mod, ErrOffline)
	}
	list, lerr := g.getInternal(ctx, KindList, mod, "")
	newest := ""
	for _, v := range strings.Fields(string(list)) {
		if semver.Compare(v, newest) > 0 {
			newest = v
		}
	}
	if newest != "" {
		return newest, nil
	}
	body, err := g.getInternal(ctx, KindLatest, mod, "")
	if err != nil {
		return "", fmt.Errorf("finding the newest version of %s: %w", mod, errors.Join(lerr, err))
	}
	var info struct{ Version string }
	if err := json.Unmarshal(body, &info); err != nil || !semver.IsValid(info.Version) {
		return "", fmt.Errorf("%w: @latest of %s names no valid version", ErrMismatch, mod)
	}
	return info.Version, nil
}

// internalPath is the GOPROXY path of a module file.
func internalPath(kind Kind, mod, vers string) (string, error) {
	req, err := internalRequest(kind, mod, vers)
	if err != nil {
		return "", err
	}
	switch kind {
	case KindList:
		return "/" + req.escaped + "/@v/list", nil
	case KindLatest:
		return "/" + req.escaped + "/@latest", nil
	}
	return "/" + req.escaped + "." + string(kind), nil
}

// getInternal reads a small module file through the gate's own
// ServeHTTP, as a client would: policy, cache and verification apply.
func (g *Gate) getInternal(ctx context.Context, kind Kind, mod, vers string) ([]byte, error) {
	var buf bytes.Buffer
	if err := g.serveInternal(ctx, kind, mod, vers, &limitedWriter{w: &buf, n: 64 << 20}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// spoolInternal writes the module's zip, served by the gate's own
// ServeHTTP, to a temporary file.
func (g *Gate) spoolInternal(ctx context.Context, mod, vers string) (*os.File, int64, error) {
	f, err := os.CreateTemp(g.cfg.SpoolDir, "modgate-vulndb-*.zip")
	if err != nil {
		return nil, 0, fmt.Errorf("spooling the vulnerability database: %w", err)
	}
	lw := &limitedWriter{w: f, n: maxZipSize}
	if err := g.serveInternal(ctx, KindZip, mod, vers, lw); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, err
	}
	return f, maxZipSize - lw.n, nil
}

// serveInternal runs one GET through ServeHTTP and writes a 200 body to w.
func (g *Gate) serveInternal(ctx context.Context, kind Kind, mod, vers string, w io.Writer) error {
	p, err := internalPath(kind, mod, vers)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, ownRequestKey{}, true), http.MethodGet, p, nil)
	if err != nil {
		return err
	}
	req.RemoteAddr, req.Host = "modgate-vulndb", "modgate"
	cw := &captureWriter{header: http.Header{}, body: w}
	g.ServeHTTP(cw, req)
	switch {
	case cw.err != nil:
		return fmt.Errorf("%s: %w", p, cw.err)
	case cw.status != http.StatusOK:
		return fmt.Errorf("the gate answered %s with %d: %s", p, cw.status, strings.TrimSpace(cw.errBody.String()))
	}
	return nil
}

// ownRequestKey marks the context of the gate's own requests through its
// ServeHTTP (serveInternal): logged with via "internal", and not counted
// as client traffic.
type ownRequestKey struct{}

// ownRequest reports whether ctx is that of one of the gate's own requests.
func ownRequest(ctx context.Context) bool {
	v, _ := ctx.Value(ownRequestKey{}).(bool)
	return v
}

// captureWriter is the http.ResponseWriter of an internal request: a 200
// body goes to body, another status's first KB to errBody.
type captureWriter struct {
	header  http.Header
	status  int
	body    io.Writer
	errBody bytes.Buffer
	err     error
}

func (c *captureWriter) Header() http.Header { return c.header }

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

func (c *captureWriter) Write(p []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	if c.status != http.StatusOK {
		if room := 1024 - c.errBody.Len(); room > 0 {
			c.errBody.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	}
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.body.Write(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// errTooLarge is returned by a limitedWriter past its limit.
var errTooLarge = errors.New("answer larger than the limit")

// limitedWriter writes at most n bytes to w.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errTooLarge
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// serveVuln answers a request for the vulnerability database: at
// VulnPrefix on the GOPROXY endpoint, or at any path of an intercepted
// VulnHost. It reports false for any other request.
func (g *Gate) serveVuln(w http.ResponseWriter, r *http.Request) bool {
	name, ok := strings.CutPrefix(r.URL.Path, VulnPrefix)
	if intercepted(r.Context()) {
		host, _, _ := strings.Cut(strings.ToLower(r.Host), ":")
		if host != VulnHost {
			return false
		}
		name, ok = strings.TrimPrefix(r.URL.Path, "/"), true
	}
	if !ok {
		return false
	}
	start := time.Now()
	lw := &logWriter{ResponseWriter: w}
	db := g.vuln.db.Load()
	var err error
	if db == nil {
		err = g.noVulnDB()
		writeError(lw, err)
	} else {
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		db.ServeHTTP(lw, r2)
	}
	g.logRequest(lw, r, Request{Kind: KindVuln, Module: name}, outcome{}, err, start)
	return true
}

// KindVuln is a request for the vulnerability database.
const KindVuln Kind = "vulndb"

// noVulnDB is the error of a database request while there is none.
func (g *Gate) noVulnDB() error {
	st := g.VulnStatus()
	why := "the first refresh has not finished"
	if st.LastError != "" {
		why = "the last refresh failed: " + st.LastError
	}
	return &vulnUnavailable{fmt.Errorf("%w: %s", ErrNoVulnDB, why)}
}

// vulnUnavailable is answered 503: the gate may hold a database soon.
type vulnUnavailable struct{ error }

func (e *vulnUnavailable) Unwrap() error { return e.error }

// HTTPStatus is 503.
func (e *vulnUnavailable) HTTPStatus() int { return http.StatusServiceUnavailable }

// vulnFacts fills the vulnerability facts of mod@vers from the database
// in force, when the policy p could use them (p nil: always).
func (g *Gate) vulnFacts(p *policy.Policy, mod, vers string, f *policy.Facts) {
	if p != nil && !p.NeedsVulns(mod) {
		return
	}
	db := g.vuln.db.Load()
	if db == nil {
		return
	}
	f.VulnsKnown = true
	matches := db.Affected(mod, vers)
	if len(matches) > 0 {
		f.Vulns = make([]policy.Vuln, 0, len(matches))
	}
	for _, m := range matches {
		f.Vulns = append(f.Vulns, policy.Vuln{ID: m.ID, Fixed: m.Fixed, FixedOrder: m.FixedOrder,
			Reviewed: m.Reviewed, Withdrawn: m.Withdrawn})
	}
}

// vulnCollector exports the mirror's status as Prometheus metrics.
type vulnCollector struct {
	g                                       *Gate
	entries, skipped, sourceTime, refreshes *prometheus.Desc
}

// NewVulnCollector returns a collector of the vulnerability database
// mirror's metrics: entries, skipped entries, the source's commit time and
// refreshes by outcome.
func NewVulnCollector(g *Gate) prometheus.Collector {
	return &vulnCollector{g: g,
		entries: prometheus.NewDesc("modgate_vulndb_entries", "Entries in the vulnerability database in force.", nil, nil),
		skipped: prometheus.NewDesc("modgate_vulndb_skipped_entries",
			"Entry files of the vulnerability database in force that did not parse and were left out.", nil, nil),
		sourceTime: prometheus.NewDesc("modgate_vulndb_source_time_seconds",
			"Commit time of the vulndb module version in force (Unix seconds).", nil, nil),
		refreshes: prometheus.NewDesc("modgate_vulndb_refreshes_total",
			"Refreshes of the vulnerability database since start, by outcome (built, unchanged, failed).",
			[]string{"outcome"}, nil),
	}
}

func (c *vulnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.skipped
	ch <- c.sourceTime
	ch <- c.refreshes
}

func (c *vulnCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.g.VulnStatus()
	if st.DB != nil {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.DB.Entries))
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.GaugeValue, float64(st.DB.Skipped))
		ch <- prometheus.MustNewConstMetric(c.sourceTime, prometheus.GaugeValue, float64(st.DB.Source.Time.Unix()))
	}
	for _, o := range []string{"built", "unchanged", "failed"} {
		ch <- prometheus.MustNewConstMetric(c.refreshes, prometheus.CounterValue, float64(st.Refreshes[o]), o)
	}
}
