package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// openNote fails t unless msg, a signed note or a lookup answer ending in
// one, verifies with each of the verifier keys on its own.
func openNote(t *testing.T, msg []byte, vkeys ...string) *note.Note {
	t.Helper()
	var n *note.Note
	for _, vkey := range vkeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		if n, err = note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("note does not verify with %s: %v\n%s", vkey, err, msg)
		}
	}
	return n
}

func TestGateSumDB(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	f := tg.fake
	size := f.TreeSize()
	if size >= 256 {
		t.Fatalf("the fake's tree has %d records; the tile paths below assume fewer than 256", size)
	}
	t.Run("supported", func(t *testing.T) {
		if r := get(t, tg.url, "/sumdb/sum.golang.org/supported"); r.status != http.StatusOK {
			t.Errorf("supported: %d %q, want 200", r.status, r.body)
		}
	})
	t.Run("latest", func(t *testing.T) {
		r := get(t, tg.url, "/sumdb/sum.golang.org/latest")
		if r.status != http.StatusOK {
			t.Fatalf("latest: %d %q", r.status, r.body)
		}
		n := openNote(t, r.body, tg.key.vkey, f.VerifierKey())
		if tree, err := tlog.ParseTree([]byte(n.Text)); err != nil || tree.N != size {
			t.Errorf("latest tree %+v, %v; want %d records", tree, err, size)
		}
	})
	for _, m := range []module.Version{libV100, libV120, upperV100} {
		esc, _ := module.EscapePath(m.Path)
		path := "/sumdb/sum.golang.org/lookup/" + esc + "@" + m.Version
		t.Run("lookup "+m.String(), func(t *testing.T) {
			r := get(t, tg.url, path)
			if r.status != http.StatusOK {
				t.Fatalf("lookup: %d %q", r.status, r.body)
			}
			id, text, msg, err := tlog.ParseRecord(r.body)
			if err != nil {
				t.Fatalf("lookup answer: %v\n%s", err, r.body)
			}
			uid, utext, _, err := tlog.ParseRecord(upstreamBytes(t, f, path))
			if err != nil || id != uid || !bytes.Equal(text, utext) {
				t.Errorf("record %d %q, want the upstream's %d %q (%v)", id, text, uid, utext, err)
			}
			zipH1, modH1 := f.GoSum(m)
			for _, line := range []string{m.Path + " " + m.Version + " " + zipH1, m.Path + " " + m.Version + "/go.mod " + modH1} {
				if !strings.Contains(string(text), line+"\n") {
					t.Errorf("record lacks %q:\n%s", line, text)
				}
			}
			openNote(t, msg, tg.key.vkey, f.VerifierKey())
		})
	}
	tiles := []string{
		fmt.Sprintf("tile/8/0/000.p/%d", size),
		"tile/8/0/000.p/3",
		"tile/8/0/000.p/1",
	}
	for _, tile := range tiles {
		t.Run(tile, func(t *testing.T) {
			want := upstreamBytes(t, f, "/sumdb/sum.golang.org/"+tile)
			r := get(t, tg.url, "/sumdb/sum.golang.org/"+tile)
			if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
				t.Errorf("%s: %d %x, want 200 and the upstream's %x", tile, r.status, r.body, want)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("%s: Content-Type %q", tile, ct)
			}
		})
	}
	for _, tile := range []string{"tile/8/0/000", fmt.Sprintf("tile/8/0/000.p/%d", size+1), "tile/8/1/000.p/1", "tile/8/data/000.p/1"} {
		t.Run(tile+" not served", func(t *testing.T) {
			checkErrorBody(t, tile, get(t, tg.url, "/sumdb/sum.golang.org/"+tile), http.StatusNotFound)
		})
	}
}

func TestGateSumDBFork(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	for _, p := range []string{"/sumdb/sum.golang.org/latest", "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"} {
		if r := get(t, tg.url, p); r.status != http.StatusOK {
			t.Fatalf("before the fork: GET %s: %d %q", p, r.status, r.body)
		}
	}
	tg.fake.Fork()
	for _, p := range []string{
		"/sumdb/sum.golang.org/latest",
		"/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0", // stored before the fork
		"/sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0",
		"/sumdb/sum.golang.org/tile/8/0/000.p/1",
		"/sumdb/sum.golang.org/latest", // still, after the other requests
		modPath(t, libV110, ".mod"),    // needs a lookup
		modPath(t, libV110, ".zip"),
	} {
		checkErrorBody(t, "after the fork: GET "+p, get(t, tg.url, p), http.StatusBadGateway, "fork")
	}
	if !tg.witness.Forked() {
		t.Errorf("the witness did not record the fork")
	}
}

// TestSumDBRemoteSharesTileReads checks that lookups reading the same
// tile at the same time make one upstream request, while other paths
// (lookups) are each read.
func TestSumDBRemoteSharesTileReads(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		counts[r.URL.Path]++
		mu.Unlock()
		<-release
		io.WriteString(w, r.URL.Path)
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	remote := NewSumDBRemote("sum.golang.org", base, base, srv.Client(), false)
	tests := []struct {
		path string
		want int // upstream requests for 4 concurrent reads
	}{{"/tile/8/0/001", 1}, {"/lookup/example.com/m@v1.0.0", 4}}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					b, err := remote.ReadRemote(t.Context(), tt.path)
					if err != nil || string(b) != tt.path {
						t.Errorf("ReadRemote(%s) = %q, %v", tt.path, b, err)
					}
				})
			}
			// Answer once all four reads wait: on one shared request, or
			// on their own.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				mu.Lock()
				n := counts[tt.path]
				mu.Unlock()
				remote.tiles.mu.Lock()
				waiting := 0
				if f := remote.tiles.m[tt.path]; f != nil {
					waiting = f.waiters
				}
				remote.tiles.mu.Unlock()
				if (tt.want == 1 && waiting == 4 && n == 1) || (tt.want == 4 && n == 4) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 10s: %d upstream requests, %d reads waiting on a shared one", n, waiting)
				}
			}
			for range tt.want {
				release <- struct{}{}
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if counts[tt.path] != tt.want {
				t.Errorf("%d upstream requests for %s, want %d", counts[tt.path], tt.path, tt.want)
			}
		})
	}
}
