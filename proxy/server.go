package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"go.uber.org/zap"
)

// NewHTTPClient returns the client for upstream fetches: bounded dials,
// handshakes and header waits, kept-alive connections, and the system roots
// plus extra (which may be nil). It ignores HTTPS_PROXY, so that the gate
// never sends its own fetches back through itself.
func NewHTTPClient(extra []*x509.Certificate) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 60 * time.Second
	tr.MaxIdleConnsPerHost = 32
	tr.MaxResponseHeaderBytes = 64 << 10
	if len(extra) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, c := range extra {
			pool.AddCert(c)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

// Server is the listener side of the gate: an HTTP forward proxy
// (goproxy) that intercepts CONNECTs to the gate's hosts, refuses the
// others, and answers direct GOPROXY requests.
type Server struct {
	gate  *Gate
	tls   *tls.Config
	log   *zap.Logger
	proxy *goproxy.ProxyHttpServer
	front *http.Server
	mitm  *http.Server
	conns *connListener
	ready atomic.Bool
}

// NewServer returns a Server for gate, terminating intercepted TLS with
// certificates from tlsConfig (its GetCertificate).
func NewServer(gate *Gate, tlsConfig *tls.Config, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{gate: gate, tls: tlsConfig, log: logger, conns: newConnListener()}
	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(io.Discard, "", 0)
	p.NonproxyHandler = gate
	p.OnRequest().HandleConnectFunc(s.onConnect)
	p.OnRequest().DoFunc(s.onPlainProxy)
	s.proxy = p
	errLog := zap.NewStdLog(logger.Named("http"))
	s.front = &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	s.mitm = &http.Server{Handler: gate, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
	return s
}

// Serve serves on ln until ctx ends or a listener fails.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 2)
	go func() { errc <- s.mitm.Serve(s.conns) }()
	go func() { errc <- s.front.Serve(ln) }()
	s.ready.Store(true)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.front.Shutdown(shut)
	s.mitm.Shutdown(shut)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Ready reports whether the proxy listener is serving.
func (s *Server) Ready() bool { return s.ready.Load() }

// onConnect intercepts CONNECTs to the gate's hosts on port 443 and
// refuses every other CONNECT with 403 and a reason.
func (s *Server) onConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	name, port, err := net.SplitHostPort(host)
	if err == nil && port == "443" && s.gate.Intercepts(name) {
		s.log.Debug("connect", zap.String("client", ctx.Req.RemoteAddr), zap.String("host", host), zap.String("decision", "intercept"))
		return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: s.intercept}, host
	}
	reason := fmt.Errorf("%w: CONNECT to %s: modgate only intercepts %s on port 443", ErrRefused, host, strings.Join(s.gate.cfg.Intercept, ", "))
	s.log.Info("connect", zap.String("client", ctx.Req.RemoteAddr), zap.String("host", host),
		zap.String("decision", "refuse"), zap.Int("status", http.StatusForbidden))
	ctx.Resp = errorResponse(ctx.Req, reason)
	return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
}

// onPlainProxy refuses absolute-form (plain http) proxy requests.
func (s *Server) onPlainProxy(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	err := fmt.Errorf("%w: plain http proxying to %s is not allowed", ErrRefused, r.URL.Host)
	s.log.Info("proxy request refused", zap.String("client", r.RemoteAddr), zap.String("host", r.URL.Host), zap.Int("status", http.StatusForbidden))
	return r, errorResponse(r, err)
}

// errorResponse is writeError as an *http.Response, for goproxy.
func errorResponse(r *http.Request, err error) *http.Response {
	rec := &responseRecorder{header: http.Header{}}
	writeError(rec, err)
	body := rec.body.String()
	return &http.Response{
		StatusCode: rec.status, Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Request: r, Header: rec.header,
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)), Close: true,
	}
}

type responseRecorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *responseRecorder) Header() http.Header         { return r.header }
func (r *responseRecorder) WriteHeader(code int)        { r.status = code }
func (r *responseRecorder) Write(p []byte) (int, error) { return r.body.Write(p) }

// intercept answers the CONNECT and hands the connection, wrapped in TLS
// with a leaf certificate for the host, to the interception HTTP server.
func (s *Server) intercept(req *http.Request, client net.Conn, ctx *goproxy.ProxyCtx) {
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		client.Close()
		return
	}
	host, _, _ := net.SplitHostPort(req.URL.Host)
	cfg := s.tls.Clone()
	get := s.tls.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" { // no SNI: answer for the CONNECT host
			hello.ServerName = host
		}
		return get(hello)
	}
	if !s.conns.push(tls.Server(client, cfg)) {
		client.Close()
	}
}

// connListener is a net.Listener fed with intercepted connections.
type connListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener() *connListener {
	return &connListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
