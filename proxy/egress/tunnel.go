package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/internal/logfield"
	"github.com/modgate/modgate/policy"
)

// Tunnel is an allowed CONNECT whose upstream connection is open, waiting
// for Serve to answer the client and copy bytes both ways.
type Tunnel struct {
	e        *Egress
	client   string
	target   Target
	decision policy.Decision
	resolved string
	conn     net.Conn
	start    time.Time
}

// Connect decides a CONNECT from client to t (a host the gate does not
// intercept) by the host rules, then resolves, checks and dials it. A
// refusal wraps ErrRefused (403); a failure to resolve or connect is a
// 502. Refusals and failures are logged here; a Tunnel logs when it ends.
func (e *Egress) Connect(ctx context.Context, client string, t Target) (*Tunnel, error) {
	start := time.Now()
	d := e.decide(t)
	if !d.Allowed {
		err := fmt.Errorf("%w: CONNECT to %w", ErrRefused, &DeniedHostError{Target: t, Decision: d})
		e.logRefused(LineConnect, client, t, "", d, start, err)
		return nil, err
	}
	conn, resolved, err := e.dialTarget(ctx, t)
	if err != nil {
		err = refusal("CONNECT", t, err)
		e.logRefused(LineConnect, client, t, resolved, d, start, err)
		return nil, err
	}
	return &Tunnel{e: e, client: client, target: t, decision: d, resolved: resolved, conn: conn, start: start}, nil
}

// Serve answers the client's CONNECT with 200, copies bytes both ways
// until the tunnel ends, and logs the tunnel with its byte counts.
func (tn *Tunnel) Serve(client net.Conn) {
	var out, in int64
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err == nil {
		out, in = splice(client, tn.conn, tn.e.cfg.IdleTimeout)
	}
	client.Close()
	tn.conn.Close()
	decision := "tunnel"
	if tn.decision.WouldDeny {
		decision = "would_deny"
	}
	tn.e.logLine(LineConnect, tn.client, tn.target, tn.resolved, tn.decision, decision,
		zap.Int64(logfield.BytesOut, out), zap.Int64(logfield.BytesIn, in),
		zap.Duration(logfield.Duration, time.Since(tn.start)))
}

// Close closes the upstream connection of a tunnel that will not be served.
func (tn *Tunnel) Close() error { return tn.conn.Close() }

// splice copies client→upstream and upstream→client until both directions
// end, an error ends one, or neither carries data for idle. An EOF from one
// side half-closes the other, so request-then-response protocols finish.
// It returns the bytes sent to the upstream (out) and received from it (in).
func splice(client, upstream net.Conn, idle time.Duration) (out, in int64) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	closeBoth := func() { once.Do(func() { client.Close(); upstream.Close() }) }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); out = pipe(upstream, client, idle, &last, closeBoth) }()
	go func() { defer wg.Done(); in = pipe(client, upstream, idle, &last, closeBoth) }()
	wg.Wait()
	closeBoth()
	return out, in
}

// pipe copies src to dst and returns the bytes copied. A read that times
// out while the other direction was active within idle is retried.
func pipe(dst, src net.Conn, idle time.Duration, last *atomic.Int64, closeBoth func()) int64 {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		src.SetReadDeadline(time.Now().Add(idle))
		k, err := src.Read(buf)
		if k > 0 {
			last.Store(time.Now().UnixNano())
			dst.SetWriteDeadline(time.Now().Add(idle))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				closeBoth()
				return n
			}
			n += int64(k)
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle:
		case errors.Is(err, io.EOF):
			if closeWrite(dst) != nil {
				closeBoth()
			}
			return n
		default:
			closeBoth()
			return n
		}
	}
}
