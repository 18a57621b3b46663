package admin

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminHandler(t *testing.T) {
	const vkey = "sum.golang.org+88428aed+AacuaC+19a1/mCg3VWVgcaJc3Asgp1NZqwYa5f/8MfGS"
	ready := false
	full := Handler(Config{Ready: func() bool { return ready }, CAPEM: []byte("PEM"), Verifier: vkey})
	bare := Handler(Config{})
	for _, tc := range []struct {
		name     string
		h        http.Handler
		ready    bool
		path     string
		code     int
		body, ct string
	}{
		{"healthz", full, false, "/healthz", 200, "ok\n", "text/plain; charset=utf-8"},
		{"readyz before", full, false, "/readyz", 503, "not ready\n", "text/plain; charset=utf-8"},
		{"readyz after", full, true, "/readyz", 200, "ready\n", "text/plain; charset=utf-8"},
		{"readyz without Ready", bare, true, "/readyz", 503, "not ready\n", "text/plain; charset=utf-8"},
		{"ca.pem", full, true, "/ca.pem", 200, "PEM", "application/x-pem-file"},
		{"verifier.txt", full, true, "/verifier.txt", 200, vkey + "\n", "text/plain; charset=utf-8"},
		{"no verifier", bare, true, "/verifier.txt", 404, "404 page not found\n", "text/plain; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready = tc.ready
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.code || string(body) != tc.body || rec.Header().Get("Content-Type") != tc.ct {
				t.Errorf(
					"GET %s: %d %q %q; want %d %q %q",
					tc.path,
					rec.Code,
					rec.Header().Get("Content-Type"),
					body,
					tc.code,
					tc.ct,
					tc.body,
				)
			}
		})
	}
}
