package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/httperr"
	"github.com/modgate/modgate/signer"
)

// Errors the pipeline reports; writeError maps them to HTTP.
var (
	// ErrOffline reports a cache miss while running with --offline.
	ErrOffline = errors.New("not in the cache (modgate is offline)")
	// ErrMismatch reports a module file whose hash differs from the
	// checksum database, or an .info for another version.
	ErrMismatch = errors.New("verification failed")
	// ErrTooLarge reports a module zip over the 500 MiB limit.
	ErrTooLarge = errors.New("module zip larger than 500 MiB")
	// ErrRefused reports a request the gate refuses, such as a CONNECT to a
	// host it does not intercept. It is the sentinel that proxy/egress
	// wraps too (httperr.ErrRefused).
	ErrRefused = httperr.ErrRefused
)

// UpstreamError is an unexpected answer from an upstream server.
type UpstreamError struct {
	URL    string // redacted
	Status int    // HTTP status; 0 for a transport failure
	Body   string // the first line of a text body, if any
	Err    error  // the transport error, if any
}

func (e *UpstreamError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("upstream %s: %v", e.URL, e.Err)
	case e.Body != "":
		return fmt.Sprintf("upstream %s: %d %s: %s", e.URL, e.Status, http.StatusText(e.Status), e.Body)
	}
	return fmt.Sprintf("upstream %s: %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// Unwrap returns the transport error.
func (e *UpstreamError) Unwrap() error { return e.Err }

// NotFound reports whether the upstream said the object does not exist.
func (e *UpstreamError) NotFound() bool {
	return e.Status == http.StatusNotFound || e.Status == http.StatusGone
}

// redact drops credentials and the query from a URL for messages.
func redact(u *url.URL) string { return httperr.Redact(u) }

// statusOf maps an error to the HTTP status a client gets: an error's own
// HTTPStatus, 400 for a bad request and 403 for a refusal (httperr.Known),
// then what only the pipeline reports (507 for a full cache disk, 504
// offline, 404 for what is not there), then 504 for a timeout and 502 for
// every upstream, verification and fork failure (httperr.Fallback).
func statusOf(err error) int {
	if s, ok := httperr.Known(err); ok {
		return s
	}
	var ue *UpstreamError
	switch {
	case errors.Is(err, cache.ErrDiskFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrOffline):
		return http.StatusGatewayTimeout
	case errors.Is(err, signer.ErrNotFound):
		return http.StatusNotFound
	case errors.As(err, &ue) && ue.NotFound():
		return ue.Status
	}
	return httperr.Fallback(err)
}

// maxErrorLines is the most lines of an error body the go command shows.
const maxErrorLines = 8

// maxErrorBytes is below the 648 bytes of an error body the go command shows.
const maxErrorBytes = 640

// writeError writes err as the go command shows errors: text/plain,
// starting with "modgate:", at most eight printable lines.
func writeError(w http.ResponseWriter, err error) int {
	status := statusOf(err)
	if df := (*cache.DiskFullError)(nil); errors.As(err, &df) {
		err = df // "cache disk full: ...", without the layers that led there
	}
	msg := errorText(err)
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Modgate-Error", strings.SplitN(msg, "\n", 2)[0])
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprint(w, msg)
	return status
}

// errorText formats err for a client: "modgate: " and at most eight lines
// of printable text, with no blank line (the go command stops at one).
func errorText(err error) string {
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.Map(func(r rune) rune {
			if r == '\t' {
				return ' '
			}
			if r == utf8.RuneError || !unicode.IsGraphic(r) {
				return -1 // the go command drops a body with any such rune
			}
			return r
		}, line)
		if strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		lines = []string{"internal error"}
	}
	if len(lines) > maxErrorLines {
		lines = lines[:maxErrorLines]
	}
	lines[0] = "modgate: " + lines[0]
	msg := strings.Join(lines, "\n")
	if len(msg) > maxErrorBytes {
		msg = strings.TrimRightFunc(strings.ToValidUTF8(msg[:maxErrorBytes], ""), unicode.IsSpace)
	}
	return msg + "\n"
}
