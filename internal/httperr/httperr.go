// Package httperr is the error vocabulary that the gate (proxy) and its
// egress (proxy/egress) share: the sentinels that map to 400 and 403, the
// part of the error-to-status mapping that both need, and the redaction of
// URLs and upstream bodies for messages. It is a leaf: it imports nothing
// of modgate's, so that proxy/egress can use it without importing proxy.
package httperr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

var (
	// ErrBadRequest is wrapped by every error of a malformed client request
	// (a path, a CONNECT target): clients get 400.
	ErrBadRequest = errors.New("bad request")
	// ErrRefused is wrapped by every refusal of the gate, such as a CONNECT
	// to a host that the egress rules deny: clients get 403.
	ErrRefused = errors.New("refused")
)

// BadRequest returns an error wrapping ErrBadRequest, formatted as fmt.Errorf.
func BadRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// Known returns the status of an error that says its own (an HTTPStatus
// method), of ErrBadRequest (400) and of ErrRefused (403), in that order;
// ok is false for any other error.
func Known(err error) (status int, ok bool) {
	var hs interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &hs):
		return hs.HTTPStatus(), true
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, true
	case errors.Is(err, ErrRefused):
		return http.StatusForbidden, true
	}
	return 0, false
}

// Fallback is the status of an error that no more specific rule maps: 504
// for a cancellation or a deadline, else 502 (the upstream failed).
func Fallback(err error) int {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// Status is Known, else Fallback.
func Status(err error) int {
	if s, ok := Known(err); ok {
		return s
	}
	return Fallback(err)
}

// Redact drops credentials and the query from a URL, for messages.
func Redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.Redacted()
}

// maxFirstLine bounds what FirstLine reads of a body.
const maxFirstLine = 512

// FirstLine returns the first line of a short text/plain body, for
// messages; "" for a body of another type.
func FirstLine(resp *http.Response) string {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxFirstLine))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
