package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/internal/logfield"
)

// rejectLogInterval is how often the gate logs, per client address, that
// a client rejected the interception certificate.
const rejectLogInterval = 10 * time.Minute

// rejectLog logs a client that rejects the gate's certificate once per
// client address and rejectLogInterval, so that a misconfigured build
// farm does not flood the log, and a new client is still seen at once.
type rejectLog struct {
	mu   sync.Mutex
	last map[netip.Addr]time.Time
}

// certRejected reports whether err is the client's TLS alert that it does
// not accept the gate's certificate (no CA, or the wrong one).
func certRejected(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" &&
		(strings.Contains(oe.Err.Error(), "certificate") || strings.Contains(oe.Err.Error(), "unknown ca"))
}

// handshakeFailed logs a failed handshake of an intercepted connection:
// a rejected certificate at warn level with the fix, once per client
// address and interval; anything else (a client that went away) at debug.
func (l *rejectLog) handshakeFailed(log *zap.Logger, client, host string, err error, now time.Time) {
	if !certRejected(err) {
		log.Debug("tls handshake", zap.String("client", client), zap.String("host", host), zap.Error(err))
		return
	}
	ap, perr := netip.ParseAddrPort(client)
	addr := ap.Addr()
	l.mu.Lock()
	if l.last == nil {
		l.last = map[netip.Addr]time.Time{}
	}
	for a, t := range l.last { // bounded: entries older than the interval go
		if now.Sub(t) >= rejectLogInterval {
			delete(l.last, a)
		}
	}
	_, seen := l.last[addr]
	if !seen || perr != nil {
		l.last[addr] = now
	}
	l.mu.Unlock()
	if seen {
		return
	}
	log.Warn("client rejected the gate's certificate",
		zap.String(logfield.Client, client), zap.String(logfield.Host, host), zap.Error(err),
		zap.String(logfield.Hint, "the client does not trust the gate's CA: give it ca.pem (on Linux SSL_CERT_FILE; "+
			"modgate ca cert --gate <gate URL> prints it), or run modgate doctor there"),
		zap.Duration("quiet_for", rejectLogInterval))
}

// handshake completes the TLS handshake of an intercepted connection, so
// that a failure is logged here with its cause rather than by net/http.
func (s *Server) handshake(ctx context.Context, tc interface {
	HandshakeContext(context.Context) error
}, client, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err != nil {
		s.rejects.handshakeFailed(s.log, client, host, err, time.Now())
	}
	return err
}
