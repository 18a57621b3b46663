package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestGuardLetsBundlesIn checks that the browser guard lets a bundle's
// media types through to the import endpoint only; a page cannot send
// any of them without a CORS preflight.
func TestGuardLetsBundlesIn(t *testing.T) {
	h := guardBrowser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	tests := []struct {
		path, ctype string
		want        int
	}{
		{"/api/v1/bundle/import", "application/x-tar", http.StatusTeapot},
		{"/api/v1/bundle/import", "application/zstd", http.StatusTeapot},
		{"/api/v1/bundle/import", "text/plain", http.StatusUnsupportedMediaType},
		{"/api/v1/bundle/import", "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"/api/v1/policy/rules", "application/x-tar", http.StatusUnsupportedMediaType},
		{"/api/v1/bundle/export", "application/zstd", http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		t.Run(tt.path+" "+tt.ctype, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader("x"))
			r.Header.Set("Content-Type", tt.ctype)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d", w.Code, tt.want)
			}
		})
	}
}
