// Package stall bounds the pauses of HTTP answers: the wait for an
// upstream's headers and every gap in a body. The gate's upstream client
// (proxy) and its forwarded plain-http requests (proxy/egress) share it,
// so both report a stall the same way. It imports nothing of modgate's.
package stall

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled reports an upstream that sent nothing for the stall timeout,
// before its headers or in its body. It wraps context.DeadlineExceeded, so
// clients get 504.
var ErrStalled = fmt.Errorf("upstream stalled: %w", context.DeadlineExceeded)

// Transport ends a request that gets no answer within D, or whose body
// pauses for longer than D.
type Transport struct {
	Base *http.Transport
	D    time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(req.Context())
	var fired atomic.Bool
	timer := time.AfterFunc(t.D, func() { fired.Store(true); cancel() })
	resp, err := t.Base.RoundTrip(req.WithContext(ctx))
	timer.Stop()
	if err != nil {
		cancel()
		if fired.Load() {
			err = fmt.Errorf("%w: no answer within %s", ErrStalled, t.D)
		}
		return nil, err
	}
	resp.Body = NewBody(resp.Body, cancel, t.D)
	return resp, nil
}

// CloseIdleConnections closes the transport's idle connections.
func (t *Transport) CloseIdleConnections() { t.Base.CloseIdleConnections() }

// Body cancels its request when no byte arrives for d, and then reports
// ErrStalled instead of the cancellation.
type Body struct {
	rc     io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	d      time.Duration
	fired  atomic.Bool
	once   sync.Once
}

// NewBody wraps rc, whose request cancel ends; the clock starts now.
func NewBody(rc io.ReadCloser, cancel context.CancelFunc, d time.Duration) *Body {
	b := &Body{rc: rc, cancel: cancel, d: d}
	b.timer = time.AfterFunc(d, func() { b.fired.Store(true); cancel() })
	return b
}

// Read reads from the body and restarts the clock when bytes arrive.
func (b *Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.d)
	}
	if err != nil && err != io.EOF && b.fired.Load() {
		err = fmt.Errorf("%w: nothing received for %s", ErrStalled, b.d)
	}
	return n, err
}

// Close closes the body, stops the clock and cancels the request.
func (b *Body) Close() error {
	err := b.rc.Close()
	b.once.Do(func() { b.timer.Stop(); b.cancel() })
	return err
}
