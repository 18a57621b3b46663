package proxy

import (
	"context"
	"crypto/tls"
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
	"github.com/modgate/modgate/proxy/egress"
	"go.uber.org/zap"
)

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
	// tickets keeps session resumption working across the per-connection
	// clones of tls (see ticketKeys).
	tickets ticketKeys
	rejects rejectLog // clients that reject the interception certificate

	egress  atomic.Pointer[egress.Egress]
	metrics *Metrics

	limits   Limits       // see SetLimits
	connects atomic.Int64 // CONNECTs open now
}

// NewServer returns a Server for gate, terminating intercepted TLS with
// certificates from tlsConfig (its GetCertificate).
func NewServer(gate *Gate, tlsConfig *tls.Config, logger *zap.Logger) *Server {
	if logger == nil {
		logger = zap.NewNop()
	}
	s := &Server{gate: gate, log: logger, conns: newConnListener(), metrics: gate.metrics()}
	s.tls = s.tickets.shareTickets(tlsConfig)
	s.SetLimits(Limits{})
	deny, _ := egress.New(egress.Config{Logger: logger.Named("egress")})
	s.egress.Store(deny)
	p := goproxy.NewProxyHttpServer()
	p.Logger = log.New(io.Discard, "", 0)
	// Every tunnel and forwarded request goes through the Egress; never
	// through goproxy's own dialer, transport or HTTPS_PROXY.
	p.ConnectDial, p.Tr = nil, &http.Transport{Proxy: nil}
	p.NonproxyHandler = gate
	p.OnRequest().HandleConnectFunc(s.onConnect)
	p.OnRequest().DoFunc(s.onPlainProxy)
	s.proxy = p
	errLog := zap.NewStdLog(logger.Named("http"))
	s.front = newHTTPServer(http.HandlerFunc(s.serveFront), errLog)
	s.mitm = newHTTPServer(gate, errLog)
	s.mitm.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, interceptedKey{}, true)
	}
	return s
}

// newHTTPServer returns an http.Server for h with the gate's bounds on
// header size and idle connections.
func newHTTPServer(h http.Handler, errLog *log.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: errLog}
}

// SetEgress sets what CONNECTs and plain http:// proxy requests to hosts
// the gate does not intercept may reach. By default they are all refused.
// Call it before Serve, which tells the Egress the listener's address.
func (s *Server) SetEgress(e *egress.Egress) { s.egress.Store(e) }

// Serve serves on ln until ctx ends or a listener fails. Tunnels to ln's
// address are refused.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.egress.Load().AddSelf(ln.Addr())
	errc := make(chan error, 2)
	go func() { errc <- s.mitm.Serve(s.conns) }()
	go func() { errc <- s.front.Serve(idleListener{Listener: ln, idle: s.limits.WriteIdle}) }()
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

// onConnect intercepts CONNECTs to the gate's hosts on port 443, refuses
// the gate's hosts on other ports, and hands every other CONNECT to the
// Egress: tunnelled if the host rules and the address checks allow it,
// else refused with 403 and a reason (400 for a malformed target).
func (s *Server) onConnect(host string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	client := ctx.Req.RemoteAddr
	e := s.egress.Load()
	t, err := egress.ParseTarget(host, 0)
	if err == nil && s.gate.Intercepts(t.Host) {
		if t.Port == 443 {
			e.LogIntercept(client, t)
			s.metrics.connect("intercept")
			return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: s.intercept}, host
		}
		err = fmt.Errorf("%w: CONNECT to %s: modgate answers for %s itself, on port 443 only", ErrRefused, t, t.Host)
	}
	var tn *egress.Tunnel
	if err != nil {
		e.LogRefused(egress.LineConnect, client, host, err)
	} else {
		tn, err = e.Connect(ctx.Req.Context(), client, t)
	}
	if err != nil {
		s.metrics.connect("refuse")
		if statusOf(err) == http.StatusForbidden {
			s.metrics.egressRefused()
		}
		ctx.Resp = errorResponse(ctx.Req, err)
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, host
	}
	s.metrics.connect("tunnel")
	serve := func(_ *http.Request, c net.Conn, _ *goproxy.ProxyCtx) { tn.Serve(c) }
	return &goproxy.ConnectAction{Action: goproxy.ConnectHijack, Hijack: serve}, host
}

// onPlainProxy forwards an absolute-form (plain http://) proxy request
// through the Egress, or refuses it. The gate's own hosts are answered
// over https only.
func (s *Server) onPlainProxy(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	e := s.egress.Load()
	t, err := egress.ParseTarget(r.URL.Host, 80)
	if err == nil && s.gate.Intercepts(t.Host) {
		err = fmt.Errorf("%w: plain http to %s: modgate answers for %s itself, over https (CONNECT) only",
			ErrRefused, t, t.Host)
	}
	if err != nil {
		e.LogRefused(egress.LineForward, r.RemoteAddr, r.URL.Host, err)
		if statusOf(err) == http.StatusForbidden {
			s.metrics.egressRefused()
		}
		return r, errorResponse(r, err)
	}
	resp, err := e.Forward(r, r.RemoteAddr, t)
	if err != nil {
		if statusOf(err) == http.StatusForbidden {
			s.metrics.egressRefused()
		}
		return r, errorResponse(r, err)
	}
	return r, resp
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
	s.tickets.maybeRotate(s.tls)
	cfg := s.tls.Clone()
	get := s.tls.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" { // no SNI: answer for the CONNECT host
			hello.ServerName = host
		}
		return get(hello)
	}
	tc := tls.Server(client, cfg)
	if err := s.handshake(req.Context(), tc, req.RemoteAddr, host); err != nil {
		tc.Close()
		return
	}
	if !s.conns.push(tc) {
		tc.Close()
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
