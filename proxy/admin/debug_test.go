package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
