package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestDebugHandler(t *testing.T) {
	srv := httptest.NewServer(DebugHandler(func() map[string]int64 { return map[string]int64{"leaves_issued": 2} }))
	defer srv.Close()
	tests := []struct {
		path   string
		status int
	}{
		{"/debug/counters", http.StatusOK},
		{"/debug/pprof/", http.StatusOK},
		{"/debug/pprof/heap", http.StatusOK},
		{"/other", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.path == "/debug/counters" {
				var c map[string]int64
				if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c["leaves_issued"] != 2 {
					t.Errorf("counters %v, %v", c, err)
				}
			}
		})
	}
}

// TestDebugCmdlineRedacts checks that /debug/pprof/cmdline shows the
// command line without the credentials of any URL in it.
func TestDebugCmdlineRedacts(t *testing.T) {
	args := []string{"modgate", "serve", "--parent-proxy", "http://corp:s3cret@proxy.corp:8080",
		"--parent-proxy=https://corp:s3cret@proxy.corp", "--upstream", "https://tok3n@goproxy.corp/",
		"http://corp:s3cret@bad%zz", "--listen", "127.0.0.1:0", "user@example.com"}
	rec := httptest.NewRecorder()
	cmdline(args)(rec, httptest.NewRequest("GET", "/debug/pprof/cmdline", nil))
	got := strings.Split(rec.Body.String(), "\x00")
	want := []string{"modgate", "serve", "--parent-proxy", "http://corp:xxxxx@proxy.corp:8080",
		"--parent-proxy=https://corp:xxxxx@proxy.corp", "--upstream", "https://xxxxx@goproxy.corp/",
		"http://xxxxx@bad%zz", "--listen", "127.0.0.1:0", "user@example.com"}
	if !slices.Equal(got, want) {
		t.Errorf("cmdline\n got %q\nwant %q", got, want)
	}
	if strings.Contains(rec.Body.String(), "s3cret") || strings.Contains(rec.Body.String(), "tok3n") {
		t.Errorf("cmdline shows a credential: %q", rec.Body.String())
	}
}
