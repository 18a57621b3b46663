package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/internal/httperr"
	"github.com/modgate/modgate/internal/logfield"
	"github.com/modgate/modgate/internal/stall"
	"github.com/modgate/modgate/policy"
)

// forwardTransport carries forwarded plain http:// requests. Without a
// parent proxy it dials through dialTarget (resolve, check, dial the
// checked address); with one, it sends the request to the parent.
type forwardTransport struct{ *http.Transport }

func newForwardTransport(e *Egress) forwardTransport {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			t, err := ParseTarget(addr, 0)
			if err != nil {
				return nil, err
			}
			c, _, err := e.dialTarget(ctx, t)
			return c, err
		},
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  60 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
	if p := e.cfg.ParentProxy; p != nil {
		tr.Proxy = http.ProxyURL(p)
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, e.cfg.DialTimeout)
			defer cancel()
			return e.dial(ctx, network, addr)
		}
	}
	return forwardTransport{tr}
}

// removeHopHeaders removes the hop-by-hop headers of a forwarded request
// or response (RFC 9110 section 7.6.1), and the headers Connection names.
func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		h.Del(name)
	}
}

// Forward decides an absolute-form plain http:// request from client to t
// (a host the gate does not intercept) by the host rules and, if allowed,
// sends it on and returns the answer. Its body logs the request when it is
// closed. Errors are as for Connect.
func (e *Egress) Forward(r *http.Request, client string, t Target) (*http.Response, error) {
	start := time.Now()
	d := e.decide(t)
	var err error
	switch {
	case r.URL.Scheme != "http":
		err = httperr.BadRequest(
			"proxy request for %s://%s: only http:// is forwarded; use CONNECT for https",
			r.URL.Scheme,
			t,
		)
	case !d.Allowed:
		err = fmt.Errorf("%w: request to %w", ErrRefused, &DeniedHostError{Target: t, Decision: d})
	case e.cfg.ParentProxy != nil:
		if _, rerr := e.resolve(r.Context(), t); rerr != nil && !errors.As(rerr, new(*ResolveError)) {
			err = refusal("request", t, rerr)
		}
	}
	if err != nil {
		e.logRefused(LineForward, client, t, "", d, start, err)
		return nil, err
	}
	fw := &forwarded{e: e, client: client, target: t, decision: d, start: start, method: r.Method}
	resp, err := fw.roundTrip(r)
	if err != nil {
		err = refusal("request", t, err)
		e.logRefused(LineForward, client, t, fw.addr(), d, start, err)
		return nil, err
	}
	return resp, nil
}

// forwarded is one forwarded request, logged when its answer is closed.
type forwarded struct {
	e        *Egress
	client   string
	target   Target
	decision policy.Decision
	start    time.Time
	method   string
	mu       sync.Mutex
	resolved string
	out, in  atomic.Int64
	status   int
	once     sync.Once
}

func (fw *forwarded) addr() string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return fw.resolved
}

// roundTrip sends a cleaned copy of r and wraps the answer's body.
func (fw *forwarded) roundTrip(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		fw.mu.Lock()
		fw.resolved = info.Conn.RemoteAddr().String()
		fw.mu.Unlock()
	}})
	out := r.Clone(ctx)
	out.RequestURI = ""
	removeHopHeaders(out.Header)
	if out.Body != nil && out.Body != http.NoBody {
		out.Body = &countingReader{ReadCloser: out.Body, n: &fw.out}
	}
	resp, err := fw.e.forwardT.RoundTrip(out)
	if err != nil {
		cancel()
		return nil, err
	}
	fw.status = resp.StatusCode
	removeHopHeaders(resp.Header)
	body := stall.NewBody(resp.Body, cancel, fw.e.cfg.IdleTimeout)
	resp.Body = &loggedBody{ReadCloser: &countingReader{ReadCloser: body, n: &fw.in}, done: fw.log}
	return resp, nil
}

// log writes the request's log line, once.
func (fw *forwarded) log() {
	fw.once.Do(func() {
		decision := "forward"
		if fw.decision.WouldDeny {
			decision = "would_deny"
		}
		fw.e.logLine(LineForward, fw.client, fw.target, fw.addr(), fw.decision, decision,
			zap.String(logfield.Method, fw.method), zap.Int(logfield.Status, fw.status),
			zap.Int64(logfield.BytesOut, fw.out.Load()), zap.Int64(logfield.BytesIn, fw.in.Load()),
			zap.Duration(logfield.Duration, time.Since(fw.start)))
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// loggedBody calls done once it is closed.
type loggedBody struct {
	io.ReadCloser
	done func()
}

func (b *loggedBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}
