package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled reports an upstream that sent nothing for the stall timeout,
// before its headers or in its body. It wraps context.DeadlineExceeded, so
// clients get 504.
var ErrStalled = fmt.Errorf("upstream stalled: %w", context.DeadlineExceeded)

// DefaultStallTimeout is how long an upstream may send nothing.
const DefaultStallTimeout = 60 * time.Second

// ClientOptions configures NewHTTPClientWith. The zero value means the
// system roots, no proxy and the default stall timeout.
type ClientOptions struct {
	// Roots are trusted for the upstream's TLS in addition to the system's.
	Roots []*x509.Certificate
	// ParentProxy, if set, is the http:// or https:// proxy that upstream
	// fetches go through (CONNECT for https upstreams); user:password in the
	// URL become Basic Proxy-Authorization. Nil means none: HTTPS_PROXY is
	// ignored, so the gate never sends its own fetches back through itself.
	ParentProxy *url.URL
	// StallTimeout bounds the wait for the upstream's headers and every
	// pause in its body. 0 means DefaultStallTimeout.
	StallTimeout time.Duration
}

// NewHTTPClientWith returns the client for upstream fetches: bounded
// dials, handshakes, header waits and pauses (ErrStalled), answers with at
// most 64 KiB of headers, and kept-alive connections.
func NewHTTPClientWith(o ClientOptions) *http.Client {
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if o.ParentProxy != nil {
		tr.Proxy = http.ProxyURL(o.ParentProxy)
	}
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 0 // stallTransport bounds the wait
	tr.MaxIdleConnsPerHost = 32
	tr.MaxResponseHeaderBytes = 64 << 10
	if len(o.Roots) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, c := range o.Roots {
			pool.AddCert(c)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: &stallTransport{base: tr, d: o.StallTimeout}}
}

// stallTransport ends a request that gets no answer within d, or whose
// body pauses for longer than d.
type stallTransport struct {
	base *http.Transport
	d    time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	var fired atomic.Bool
	timer := time.AfterFunc(t.d, func() { fired.Store(true); cancel() })
	resp, err := t.base.RoundTrip(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		cancel()
		if fired.Load() {
			err = fmt.Errorf("%w: no answer within %s", ErrStalled, t.d)
		}
		return nil, err
	}
	resp.Body = newStallBody(resp.Body, cancel, t.d)
	return resp, nil
}

// CloseIdleConnections closes the transport's idle connections.
func (t *stallTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// stallBody cancels its request when no byte arrives for d, and then
// reports ErrStalled instead of the cancellation.
type stallBody struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	d      time.Duration
	fired  atomic.Bool
	once   sync.Once
}

func newStallBody(rc io.ReadCloser, cancel context.CancelFunc, d time.Duration) *stallBody {
	b := &stallBody{rc: rc, cancel: cancel, d: d}
	b.timer = time.AfterFunc(d, func() { b.fired.Store(true); cancel() })
	return b
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if err != nil && err != io.EOF && b.fired.Load() {
		err = fmt.Errorf("%w: nothing received for %s", ErrStalled, b.d)
	}
	return n, err
}

func (b *stallBody) Close() error {
	err := b.rc.Close()
	b.once.Do(func() { b.timer.Stop(); b.cancel() })
	return err
}
