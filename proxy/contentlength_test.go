package proxy

import (
	"io"
	"net/http"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestEveryResponseHasContentLength checks that no answer of the gate is
// chunked: the go command and proxies in between see each body's length
// up front, for hits, misses and errors alike.
func TestEveryResponseHasContentLength(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tile := tlog.Tile{H: 8, L: 0, N: 0, W: int(min(tg.fake.TreeSize(), 256))}
	paths := []struct {
		path   string
		status int
	}{
		{"/example.com/lib/@v/list", 200},
		{"/example.com/lib/@latest", 200},
		{"/example.com/lib/@v/v1.0.0.info", 200},
		{"/example.com/lib/@v/v1.0.0.mod", 200},
		{"/example.com/lib/@v/v1.0.0.zip", 200},
		{"/sumdb/sum.golang.org/supported", 200},
		{"/sumdb/sum.golang.org/latest", 200},
		{"/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0", 200},
		{"/sumdb/sum.golang.org/" + tile.Path(), 200},
		{"/example.com/nosuch/@v/v1.0.0.zip", 404},
		{"/not-a-module-path", 400},
	}
	for _, pass := range []string{"miss", "hit"} {
		for _, p := range paths {
			t.Run(pass+p.path, func(t *testing.T) {
				resp, err := http.Get(tg.url + p.path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != p.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, p.status, body)
				}
				if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
					t.Errorf("Content-Length %d, Transfer-Encoding %v, body of %d bytes", resp.ContentLength, resp.TransferEncoding, len(body))
				}
			})
		}
	}
}
