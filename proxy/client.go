package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/modgate/modgate/internal/stall"
)

// ErrStalled reports an upstream that sent nothing for the stall timeout,
// before its headers or in its body. It wraps context.DeadlineExceeded, so
// clients get 504. It is stall.ErrStalled.
var ErrStalled = stall.ErrStalled

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

// newHTTPClient returns the client for upstream fetches: bounded dials,
// handshakes and header waits, kept-alive connections, and the system roots
// plus extra (which may be nil). It ignores HTTPS_PROXY, so that the gate
// never sends its own fetches back through itself. NewHTTPClientWith
// takes more options.
func newHTTPClient(extra []*x509.Certificate) *http.Client {
	return NewHTTPClientWith(ClientOptions{Roots: extra})
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
	tr.ResponseHeaderTimeout = 0 // stall.Transport bounds the wait
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
	return &http.Client{Transport: &stall.Transport{Base: tr, D: o.StallTimeout}}
}
