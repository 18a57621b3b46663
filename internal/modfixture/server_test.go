package modfixture

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

func TestServer(t *testing.T) {
	dir := t.TempDir()
	if err := WriteSynthetic(dir, "example.com/Big", "v1.0.0", 1<<20); err != nil {
		t.Fatal(err)
	}
	modOnly := filepath.Join(dir, "example.com", "old", "@v")
	if err := os.MkdirAll(modOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(modOnly, "v0.1.0.mod"), []byte("module example.com/old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sumsFile := filepath.Join(t.TempDir(), "sums.txt")
	s, err := New(context.Background(), dir, sumsFile)
	if err != nil {
		t.Fatal(err)
	}
	big := module.Version{Path: "example.com/Big", Version: "v1.0.0"}
	zipH1, err := dirhash.HashZip(filepath.Join(dir, "example.com", "!big", "@v", "v1.0.0.zip"), dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Sums(big); h.Zip != zipH1 || h.Mod == "" {
		t.Fatalf("sums of %s = %+v, want zip %s", big, h, zipH1)
	}
	again, err := LoadSums(dir, sumsFile)
	if err != nil || again[big] != (Sums{Zip: zipH1, Mod: again[big].Mod}) || len(again) != 2 {
		t.Fatalf("sums from the cache file: %v, %v", again, err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	tests := []struct {
		path, want string
		status     int
	}{
		{"/example.com/!big/@v/list", "v1.0.0\n", 200},
		{"/example.com/!big/@v/v1.0.0.mod", "module example.com/Big\n", 200},
		{"/example.com/!big/@v/v1.0.0.zip", "", 200},
		{"/example.com/!big/@v/v9.0.0.zip", "", 404},
		{"/example.com/!big/@latest", "", 404},
		{"/sumdb/sum.golang.org/supported", "", 200},
		{"/sumdb/sum.golang.org/lookup/example.com/!big@v1.0.0", "example.com/Big v1.0.0 " + zipH1, 200},
		{"/sumdb/sum.golang.org/lookup/example.com/old@v0.1.0", "example.com/old v0.1.0/go.mod h1:", 200},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
				t.Errorf("status %d body %.80q, want %d containing %q", resp.StatusCode, body, tt.status, tt.want)
			}
			if tt.status == 200 && resp.ContentLength != int64(len(body)) && !strings.HasSuffix(tt.path, "/list") {
				t.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(body))
			}
		})
	}
	if n := s.Count("/example.com/!big/@v/v1.0.0.zip"); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
	if s.TreeSize() != 2 {
		t.Errorf("TreeSize = %d, want 2", s.TreeSize())
	}
}
