package proxy

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/signer"
)

// reqInfo collects what the access log says of one request.
type reqInfo struct {
	start         time.Time
	req           Request
	err           error
	cache         string
	mu            sync.Mutex
	upstream      time.Duration
	upstreamCalls int
	decision      string // policy decision: allow, deny or would_deny
	rule          string
}

type infoKey struct{}

func withInfo(ctx context.Context, info *reqInfo) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// infoFrom returns the request's log record; a throwaway one outside a request.
func infoFrom(ctx context.Context) *reqInfo {
	if info, ok := ctx.Value(infoKey{}).(*reqInfo); ok {
		return info
	}
	return &reqInfo{}
}

func (i *reqInfo) addUpstream(d time.Duration) {
	i.mu.Lock()
	i.upstream += d
	i.upstreamCalls++
	i.mu.Unlock()
}

func (i *reqInfo) addUpstreamSince(start time.Time) { i.addUpstream(time.Since(start)) }

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

func (g *Gate) startLog(w http.ResponseWriter, r *http.Request) (*logWriter, *reqInfo) {
	return &logWriter{ResponseWriter: w}, &reqInfo{start: time.Now()}
}

// endLog writes the access-log line of a request.
func (g *Gate) endLog(w *logWriter, r *http.Request, info *reqInfo) {
	via := "goproxy"
	if r.TLS != nil {
		via = "goproxy-tls"
	}
	if intercepted(r.Context()) {
		via = "intercept"
	}
	info.mu.Lock()
	upstreamMS := info.upstream.Milliseconds()
	info.mu.Unlock()
	fields := []zap.Field{
		zap.String("client", r.RemoteAddr), zap.String("method", r.Method),
		zap.String("host", r.Host), zap.String("path", r.URL.Path), zap.String("via", via),
		zap.String("kind", string(info.req.Kind)), zap.String("module", info.req.Module),
		zap.String("version", info.req.Version), zap.Int("status", w.status),
		zap.Int64("bytes", w.bytes), zap.String("cache", info.cache),
		zap.Int64("upstream_ms", upstreamMS), zap.Duration("duration", time.Since(info.start)),
	}
	if info.decision != "" {
		fields = append(fields, zap.String("decision", info.decision), zap.String("rule", info.rule))
	}
	if info.err != nil {
		fields = append(fields, zap.String("error", info.err.Error()))
		if kind := failureKind(info.req.Kind, info.err); kind != "" {
			g.cfg.Metrics.verifyFailed(kind)
		}
	}
	g.cfg.Metrics.request(info.req.Kind, w.status, info.cache, via, w.bytes)
	g.log.Info("request", fields...)
}
