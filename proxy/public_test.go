package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestServePublic(t *testing.T) {
	g := &Gate{cfg: Config{Public: []PublicFile{
		{Name: PublicCA, ContentType: "application/x-pem-file", Body: []byte("PEM\n")},
		{Name: PublicVerifier, ContentType: "text/plain; charset=utf-8", Body: []byte("key\n")},
	}}}
	tests := []struct {
		method, path string
		handled      bool
		status       int
		body, ctype  string
	}{
		{"GET", "/.modgate/ca.pem", true, 200, "PEM\n", "application/x-pem-file"},
		{"HEAD", "/.modgate/verifier.txt", true, 200, "", "text/plain; charset=utf-8"},
		{"GET", "/.modgate/verifier.txt", true, 200, "key\n", "text/plain; charset=utf-8"},
		{"GET", "/.modgate/admin.token", true, 404, "/.modgate/ca.pem and /.modgate/verifier.txt", "text/plain; charset=utf-8"},
		{"GET", "/.modgate/../admin.token", true, 404, "no such file", "text/plain; charset=utf-8"},
		{"POST", "/.modgate/ca.pem", true, 400, "only GET and HEAD", "text/plain; charset=utf-8"},
		{"GET", "/golang.org/x/mod/@v/list", false, 0, "", ""},
		{"GET", "/.modgatex/ca.pem", false, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tc.method, "http://gate"+tc.path, nil)
			r.URL.Path = tc.path // keep "..", as a raw client may send it
			if got := g.servePublic(w, r); got != tc.handled {
				t.Fatalf("handled %v, want %v", got, tc.handled)
			}
			if !tc.handled {
				return
			}
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.body) || w.Header().Get("Content-Type") != tc.ctype {
				t.Errorf("got %d %q %q, want %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body, tc.status, tc.ctype, tc.body)
			}
			if tc.method == http.MethodHead && w.Body.Len() > len("key\n") {
				t.Errorf("HEAD body %q", w.Body)
			}
		})
	}
}
