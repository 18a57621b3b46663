package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/modgate/modgate/signer"
)

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"bad request", badRequest("invalid module path %q", "x"), http.StatusBadRequest},
		{"refused", fmt.Errorf("%w: CONNECT to example.org:443", ErrRefused), http.StatusForbidden},
		{"offline", fmt.Errorf("example.com/lib@v1.0.0: %w", ErrOffline), http.StatusGatewayTimeout},
		{"offline bare", ErrOffline, http.StatusGatewayTimeout},
		{"upstream 404", &UpstreamError{URL: "u", Status: 404}, http.StatusNotFound},
		{"upstream 410", &UpstreamError{URL: "u", Status: 410}, http.StatusGone},
		{"upstream 404 wrapped", fmt.Errorf("looking up m@v: %w", &UpstreamError{URL: "u", Status: 404}), http.StatusNotFound},
		{"upstream 500", &UpstreamError{URL: "u", Status: 500}, http.StatusBadGateway},
		{"upstream 403", &UpstreamError{URL: "u", Status: 403}, http.StatusBadGateway},
		{"upstream transport", &UpstreamError{URL: "u", Err: io.ErrUnexpectedEOF}, http.StatusBadGateway},
		{"upstream timeout", &UpstreamError{URL: "u", Err: context.DeadlineExceeded}, http.StatusGatewayTimeout},
		{"fork", signer.ErrFork, http.StatusBadGateway},
		{"fork wrapped", fmt.Errorf("lookup: %w", signer.ErrFork), http.StatusBadGateway},
		{"verify", fmt.Errorf("%w: tree note: bad signature", signer.ErrVerify), http.StatusBadGateway},
		{"witness not found", fmt.Errorf("%w: tile beyond tree", signer.ErrNotFound), http.StatusNotFound},
		{"mismatch", fmt.Errorf("%w: zip hash", ErrMismatch), http.StatusBadGateway},
		{"too large", ErrTooLarge, http.StatusBadGateway},
		{"canceled", context.Canceled, http.StatusGatewayTimeout},
		{"deadline", fmt.Errorf("fetch: %w", context.DeadlineExceeded), http.StatusGatewayTimeout},
		{"other", errors.New("disk full"), http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statusOf(tt.err); got != tt.want {
				t.Errorf("statusOf(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name    string
		msg     string
		want    string   // the whole text, if not ""
		wantIn  []string // substrings of the text
		wantNot []string // strings the text must not contain
	}{
		{name: "one line", msg: "boom", want: "modgate: boom\n"},
		{name: "empty", msg: "", want: "modgate: internal error\n"},
		{name: "only blanks", msg: "\n \n\t\n", want: "modgate: internal error\n"},
		{name: "blank lines dropped", msg: "first\n\n  \nsecond\n", want: "modgate: first\nsecond\n"},
		{name: "crlf", msg: "first\r\nsecond\r\n", want: "modgate: first\nsecond\n"},
		{name: "tabs become spaces", msg: "a\tb", want: "modgate: a b\n"},
		{name: "twenty lines", msg: strings.Repeat("line\n", 20), wantIn: []string{"modgate: line\n"}},
		{name: "terminal escapes", msg: "\x1b[31mred\x1b[0m\a\b", wantIn: []string{"red"}, wantNot: []string{"\x1b", "\a", "\b"}},
		{name: "DEL and NUL", msg: "a\x7fb\x00c", want: "modgate: abc\n"},
		{name: "invalid UTF-8", msg: "bad \xff\xfe bytes", want: "modgate: bad  bytes\n"},
		{name: "replacement char", msg: "x\uFFFDy", want: "modgate: xy\n"},
		{name: "one long line", msg: long, wantIn: []string{"modgate: xxx"}},
		{name: "long multibyte line", msg: strings.Repeat("é", 1000), wantIn: []string{"modgate: éé"}},
		{name: "long lines", msg: strings.Repeat(strings.Repeat("y", 100)+"\n", 8)},
		{name: "unicode kept", msg: "módulo ünïcödé 模块", want: "modgate: módulo ünïcödé 模块\n"},
		// The go command drops a whole body that has a rune which is
		// neither graphic nor space: an upstream's first line can carry
		// such runes into an error (UpstreamError.Body).
		{name: "bidi override", msg: "upstream says: \u202edlrow", wantIn: []string{"upstream says: "}},
		{name: "zero width space", msg: "a\u200bb"},
		{name: "C1 control", msg: "a\u0090b"},
		{name: "byte order mark", msg: "\ufeffhello", wantIn: []string{"hello"}},
		// Truncation at 640 bytes must not leave a blank last line.
		{name: "cut in leading spaces", msg: strings.Repeat("a", 620) + "\n" + strings.Repeat(" ", 40) + "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errorText(errors.New(tt.msg))
			if tt.want != "" && got != tt.want {
				t.Errorf("errorText(%q) = %q, want %q", tt.msg, got, tt.want)
			}
			t.Logf("errorText = %q", got)
			if !strings.HasPrefix(got, "modgate: ") {
				t.Errorf("errorText: want the prefix \"modgate: \"")
			}
			if !utf8.ValidString(got) {
				t.Errorf("errorText: not valid UTF-8")
			}
			if len(got) > 648 {
				t.Errorf("errorText has %d bytes, want at most 648", len(got))
			}
			if n := strings.Count(got, "\n"); n > 8 {
				t.Errorf("errorText has %d lines, want at most 8", n)
			}
			if why := goShows(got); why != "" {
				t.Errorf("errorText: the go command would not show it all: %s", why)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(got, s) {
					t.Errorf("errorText: want it to contain %q", s)
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(got, s) {
					t.Errorf("errorText: want it not to contain %q", s)
				}
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantHeader string // X-Modgate-Error
	}{
		{"bad request", badRequest("invalid module path %q", "example.com/Upper"), 400,
			`modgate: bad request: invalid module path "example.com/Upper"`},
		{"offline", fmt.Errorf("example.com/lib@v1.0.0: %w", ErrOffline), 504,
			"modgate: example.com/lib@v1.0.0: not in the cache (modgate is offline)"},
		{"refused", fmt.Errorf("%w: CONNECT to example.org:443", ErrRefused), 403,
			"modgate: refused: CONNECT to example.org:443"},
		{"upstream gone", &UpstreamError{URL: "https://proxy.golang.org/m/@v/list", Status: 410, Body: "gone"}, 410,
			"modgate: upstream https://proxy.golang.org/m/@v/list: 410 Gone: gone"},
		{"mismatch over two lines", fmt.Errorf("%w: upstream zip has hash h1:a,\nbut the checksum database says h1:b", ErrMismatch), 502,
			"modgate: verification failed: upstream zip has hash h1:a,"},
		{"header injection", errors.New("evil\r\nSet-Cookie: x=1"), 502, "modgate: evil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			// Headers set before the failure must not leak into the error.
			rec.Header().Set("Content-Type", "application/zip")
			rec.Header().Set("Content-Encoding", "gzip")
			rec.Header().Set("Content-Length", "12345")
			status := writeError(rec, tt.err)
			if status != tt.wantStatus || rec.Code != tt.wantStatus {
				t.Errorf("writeError returned %d and wrote %d, want %d", status, rec.Code, tt.wantStatus)
			}
			h := rec.Header()
			for k, want := range map[string]string{
				"Content-Type":           textPlain,
				"X-Content-Type-Options": "nosniff",
				"Cache-Control":          "no-store",
				"Content-Encoding":       "",
				"Content-Length":         "",
				"X-Modgate-Error":        tt.wantHeader,
				"Set-Cookie":             "",
			} {
				if got := h.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			body := rec.Body.String()
			if want := errorText(tt.err); body != want {
				t.Errorf("body %q, want errorText %q", body, want)
			}
			if why := goShows(body); why != "" {
				t.Errorf("body %q: the go command would not show it all: %s", body, why)
			}
		})
	}
}

func TestUpstreamErrorRedacts(t *testing.T) {
	u := mustParseURL(t, "https://user:secret@proxy.example.com/base/m/@v/list?token=abc")
	got := redact(u)
	for _, leak := range []string{"secret", "user", "token", "abc"} {
		if strings.Contains(got, leak) {
			t.Errorf("redact(%s) = %q: leaks %q", u, got, leak)
		}
	}
	if !strings.Contains(got, "proxy.example.com/base/m/@v/list") {
		t.Errorf("redact(%s) = %q: lost the host and path", u, got)
	}
}

// TestGateUpstreamMessages checks that an upstream's reason reaches the
// client in a body the go command shows, without the upstream credentials.
func TestGateUpstreamMessages(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string // the upstream's text/plain body
		want    int
		wantIn  string
		wantNot []string
	}{
		{"forbidden", 403, "access denied by the upstream's policy\nsecond line\n", 502, "access denied by the upstream's policy", nil},
		{"server error", 500, "internal error", 502, "500 Internal Server Error", nil},
		{"not found", 404, "not found: example.com/lib@v1.9.9", 404, "not found", nil},
		{"terminal escapes", 403, "\x1b]0;pwned\x07denied", 502, "denied", []string{"\x1b", "\x07"}},
		{"bidi override", 403, "denied \u202eyb", 502, "denied", nil},
		{"zero width", 403, "den\u200bied", 502, "den", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{Userinfo: url.UserPassword("ci-bot", "s3cret-token")})
			path := "/example.com/lib/@v/v1.9.9.info"
			tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", textPlain)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			r := get(t, tg.url, path)
			checkErrorBody(t, tt.name, r, tt.want, tt.wantIn)
			if why := goShows(string(r.body)); why != "" {
				t.Errorf("body %q: the go command would not show it at all: %s", r.body, why)
			}
			for _, s := range append(tt.wantNot, "s3cret-token", "ci-bot") {
				if strings.Contains(string(r.body), s) || strings.Contains(r.header.Get("X-Modgate-Error"), s) {
					t.Errorf("answer leaks %q: %q", s, r.body)
				}
			}
		})
	}
}
