package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/internal/logfield"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/signer"
)

// Cache results recorded in the access log.
const (
	cacheHit   = "hit"
	cacheMiss  = "miss"
	cacheStale = "stale"
)

// upstreamTime is the time spent on upstream requests, and how many.
type upstreamTime struct {
	d     time.Duration
	calls int
}

// since returns one upstream call that started at start.
func since(start time.Time) upstreamTime { return upstreamTime{d: time.Since(start), calls: 1} }

func (u upstreamTime) plus(v upstreamTime) upstreamTime {
	return upstreamTime{d: u.d + v.d, calls: u.calls + v.calls}
}

// outcome is what happened to one request, for its access-log line: the
// serving functions return it, and ServeHTTP logs it once.
type outcome struct {
	cache    string       // cacheHit, cacheMiss or cacheStale; "" if nothing was served
	waited   bool         // joined another request's in-flight upstream fetch
	upstream upstreamTime // upstream requests made for this answer (or the fetch it joined)
	decision string       // the policy's decision: allow, deny or would_deny; "" if it did not decide
	rule     string
}

// with returns o with what p adds: its upstream time, whether it waited,
// and its decision if o has none or p's is a denial. The cache result
// stays o's: it is that of the answer, not of the reads behind a decision.
func (o outcome) with(p outcome) outcome {
	o.upstream = o.upstream.plus(p.upstream)
	o.waited = o.waited || p.waited
	if p.decision != "" && (o.decision == "" || p.decision != string(policy.Allow)) {
		o.decision, o.rule = p.decision, p.rule
	}
	return o
}

// decided returns the outcome of a decision that the log shows.
func decided(d policy.Decision) outcome {
	o := outcome{decision: string(d.Action), rule: d.Rule}
	if d.WouldDeny {
		o.decision = "would_deny"
	}
	return o
}

// remoteClock adds up the upstream time of the checksum-database reads
// that the witness makes through SumDBRemote during one shared fetch.
// signer.Remote returns bytes only, so the time travels in the fetch's
// context (withRemoteClock); everything else returns it.
type remoteClock struct {
	mu sync.Mutex
	t  upstreamTime
}

type remoteClockKey struct{}

func withRemoteClock(ctx context.Context, c *remoteClock) context.Context {
	return context.WithValue(ctx, remoteClockKey{}, c)
}

// addRemote records one upstream read in ctx's clock, if it has one.
func addRemote(ctx context.Context, t upstreamTime) {
	if c, ok := ctx.Value(remoteClockKey{}).(*remoteClock); ok {
		c.mu.Lock()
		c.t = c.t.plus(t)
		c.mu.Unlock()
	}
}

func (c *remoteClock) total() upstreamTime {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// failureKind names the verification failure behind err, or "".
func failureKind(kind Kind, err error) string {
	switch {
	case errors.Is(err, signer.ErrFork):
		return "fork"
	case errors.Is(err, signer.ErrVerify):
		return "sumdb"
	case errors.Is(err, ErrMismatch):
		return string(kind)
	}
	return ""
}

// logWriter records the status and size of a response.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequest writes the one access-log line of a request, and counts it.
// The line's fields are built only when the logger takes info lines (a
// terminal's default level is warn).
func (g *Gate) logRequest(w *logWriter, r *http.Request, req Request, o outcome, err error, start time.Time) {
	via := "goproxy"
	if r.TLS != nil {
		via = "goproxy-tls"
	}
	if intercepted(r.Context()) {
		via = "intercept"
	}
	if ownRequest(r.Context()) { // the gate's own fetch (vuln.go): logged, not counted as traffic
		via = "internal"
	}
	if err != nil {
		if kind := failureKind(req.Kind, err); kind != "" {
			g.cfg.Metrics.verifyFailed(kind)
		}
	}
	if via != "internal" {
		g.cfg.Metrics.request(req.Kind, w.status, o.cache, via, w.bytes)
	}
	ce := g.log.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 17)
	fields = append(fields,
		zap.String(logfield.Client, r.RemoteAddr), zap.String(logfield.Method, r.Method),
		zap.String(logfield.Host, r.Host), zap.String(logfield.Path, r.URL.Path), zap.String(logfield.Via, via),
		zap.String(logfield.Kind, string(req.Kind)), zap.String(logfield.Module, req.Module),
		zap.String(logfield.Version, req.Version), zap.Int(logfield.Status, w.status),
		zap.Int64(logfield.Bytes, w.bytes), zap.String(logfield.Cache, o.cache),
		zap.Bool(logfield.Waited, o.waited), zap.Int64(logfield.UpstreamMS, o.upstream.d.Milliseconds()),
		zap.Duration(logfield.Duration, time.Since(start)),
	)
	if o.decision != "" {
		fields = append(fields, zap.String(logfield.Decision, o.decision), zap.String(logfield.Rule, o.rule))
	}
	if err != nil {
		fields = append(fields, zap.String(logfield.Error, err.Error()))
	}
	ce.Write(fields...)
}
