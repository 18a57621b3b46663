package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/modgate/modgate/proxy/egress"
)

// Limits bounds what clients may hold on the proxy listener. Its zero
// value means the defaults.
type Limits struct {
	// WriteIdle ends a connection when a write to the client makes no
	// progress for so long: a client that stops reading releases what
	// its response holds (a cache read, an upstream fetch). A slow client
	// that keeps reading is never cut. 0 means DefaultWriteIdle.
	WriteIdle time.Duration
	// MaxConnects caps the CONNECTs open at once, intercepted or
	// tunnelled; past it a CONNECT is answered 503 with the reason. 0
	// means DefaultMaxConnects; a negative value means no cap.
	MaxConnects int
}

// Defaults of Limits.
const (
	DefaultWriteIdle   = 2 * time.Minute
	DefaultMaxConnects = 1024
)

// ErrTooManyConnects reports a CONNECT refused because MaxConnects are open.
var ErrTooManyConnects = errors.New("too many CONNECTs open at once")

// connectCapError is ErrTooManyConnects with the cap, answered 503.
type connectCapError struct{ max int }

func (e connectCapError) Error() string {
	return fmt.Sprintf("%v (%d, --max-connects): try again later", ErrTooManyConnects, e.max)
}

func (e connectCapError) Unwrap() error   { return ErrTooManyConnects }
func (e connectCapError) HTTPStatus() int { return http.StatusServiceUnavailable }

// SetLimits sets the bounds on clients. Call it before Serve.
func (s *Server) SetLimits(l Limits) {
	if l.WriteIdle <= 0 {
		l.WriteIdle = DefaultWriteIdle
	}
	if l.MaxConnects == 0 {
		l.MaxConnects = DefaultMaxConnects
	}
	s.limits = l
}

// OpenConnects returns the number of CONNECTs open now.
func (s *Server) OpenConnects() int64 { return s.connects.Load() }

// serveFront is the proxy listener's handler: it counts CONNECTs against
// the cap, and hands goproxy a connection that keeps the bytes the client
// sent right behind its CONNECT (goproxy drops the buffered reader of a
// hijacked connection, and with it a ClientHello sent in the same write).
func (s *Server) serveFront(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		s.proxy.ServeHTTP(w, r)
		return
	}
	if max := s.limits.MaxConnects; max > 0 && s.connects.Add(1) > int64(max) {
		s.connects.Add(-1)
		s.metrics.connect("over_cap")
		err := connectCapError{max: max}
		s.egress.Load().LogRefused(egress.LineConnect, r.RemoteAddr, r.Host, err)
		w.Header().Set("Connection", "close")
		writeError(w, err)
		return
	}
	release := func() {}
	if s.limits.MaxConnects > 0 {
		release = func() { s.connects.Add(-1) }
	}
	h := &replayHijacker{ResponseWriter: w, release: release}
	s.proxy.ServeHTTP(h, r)
	if !h.hijacked {
		release()
	}
}

// replayHijacker is an http.ResponseWriter whose Hijack returns a
// connection that first replays the bytes the server had buffered, and
// calls release when it is closed.
type replayHijacker struct {
	http.ResponseWriter
	release  func()
	hijacked bool
}

// Hijack implements http.Hijacker.
func (h *replayHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("proxy: connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.hijacked = true
	rc := &replayConn{Conn: c, release: h.release}
	if n := rw.Reader.Buffered(); n > 0 {
		rc.pending, _ = rw.Reader.Peek(n)
		rc.pending = append([]byte(nil), rc.pending...)
	}
	return rc, rw, nil
}

// replayConn is a hijacked connection that reads pending first.
type replayConn struct {
	net.Conn
	pending []byte
	release func()
	once    sync.Once
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the connection, as a TCP connection does.
func (c *replayConn) CloseWrite() error { return halfClose(c.Conn) }

func (c *replayConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// IdleWriteListener returns ln with connections whose writes fail only
// after idle without progress (see Limits.WriteIdle). The gate's proxy
// listener uses it; so can other listeners that serve the gate.
func IdleWriteListener(ln net.Listener, idle time.Duration) net.Listener {
	return idleListener{Listener: ln, idle: idle}
}

// idleListener hands out connections whose writes fail after idle without
// progress.
type idleListener struct {
	net.Listener
	idle time.Duration
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &idleWriteConn{Conn: c, idle: l.idle}, nil
}

// idleWriteConn is a connection whose Write fails only when no byte of it
// moved for idle: every partial progress starts the deadline again, so a
// slow reader is served and a reader that stopped is cut. A write
// deadline set by the caller (a tunnel's) is replaced while Write runs.
type idleWriteConn struct {
	net.Conn
	idle time.Duration
}

func (c *idleWriteConn) Write(p []byte) (int, error) {
	var done int
	for {
		c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
		n, err := c.Conn.Write(p[done:])
		done += n
		if err == nil || n == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return done, err
		}
	}
}

// CloseWrite half-closes the connection, as a TCP connection does.
func (c *idleWriteConn) CloseWrite() error { return halfClose(c.Conn) }

// halfClose passes CloseWrite on to c, so that the tunnels' half-close
// (egress) reaches the client's TCP connection through these wrappers.
func halfClose(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
