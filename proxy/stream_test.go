package proxy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// streamZipSize is the size of the zips the streaming tests send: many
// times holdBack, so that most of a zip goes out before it is verified.
const streamZipSize = 4 << 20

// TestGateStreamsZip checks what a cold zip's clients see while it
// arrives, with the upstream paused half-way: two raw HTTP clients (the
// one that started the fetch and one that joined it) receive the first
// half before the upstream has sent the rest, so the answer is streamed;
// then, once the upstream has sent all of it:
//   - an honest zip: both complete with the upstream's bytes, and it is
//     stored once, from one upstream fetch;
//   - a zip whose hash differs from the checksum database's, or an
//     upstream that cuts its answer after the first half: both answers
//     are cut short (a read error, fewer bytes than declared; the held
//     back tail never goes out), and nothing is stored or left spooled.
func TestGateStreamsZip(t *testing.T) {
	for _, tt := range []struct {
		name    string
		altered bool // the upstream sends another zip
		cut     bool // the upstream cuts its answer after the first half
	}{
		{"verified zip completes", false, false},
		{"zip whose hash fails is cut short", true, false},
		{"upstream cut after the first half", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{Dir: t.TempDir()})
			m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
			good, err := tg.fake.AddLargeModule(m, streamZipSize, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			served := good
			if tt.altered {
				served = writeOtherZip(t, m, streamZipSize)
			}
			body, err := os.ReadFile(served)
			if err != nil {
				t.Fatal(err)
			}
			path := fakeupstream.ZipPath(m)
			release := make(chan struct{})
			tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.Write(body[:len(body)/2])
				http.NewResponseController(w).Flush()
				<-release
				if tt.cut {
					panic(http.ErrAbortHandler)
				}
				w.Write(body[len(body)/2:])
			})
			var clients [2]*http.Response
			for i := range clients {
				resp, err := http.Get(tg.url + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) {
					t.Fatalf("client %d: %d, length %d; want 200 and %d", i, resp.StatusCode, resp.ContentLength, len(body))
				}
				// The first half arrives while the upstream holds the rest.
				if _, err := io.ReadFull(resp.Body, make([]byte, len(body)/2-holdBack)); err != nil {
					t.Fatalf("client %d: reading the first half before the upstream sent the rest: %v", i, err)
				}
				clients[i] = resp
			}
			close(release)
			for i, resp := range clients {
				rest, err := io.ReadAll(resp.Body)
				got := len(body)/2 - holdBack + len(rest)
				if tt.altered || tt.cut {
					if err == nil || got >= len(body) {
						t.Errorf("client %d: %d of %d bytes, error %v; want the answer cut short", i, got, len(body), err)
					}
					if got > len(body)-holdBack {
						t.Errorf("client %d: %d bytes, more than all but the held-back tail", i, got)
					}
					continue
				}
				if err != nil || got != len(body) || !bytes.Equal(rest, body[len(body)/2-holdBack:]) {
					t.Errorf("client %d: %d of %d bytes, error %v; want the whole zip", i, got, len(body), err)
				}
			}
			if n := tg.fake.Requests(path); n != 1 {
				t.Errorf("the upstream saw %d requests, want 1", n)
			}
			key := "zip/example.com/large/@v/v1.0.0"
			if tt.altered || tt.cut { // the answers were cut once the fetch or check had failed
				if ok, err := tg.cache.HasBlob(t.Context(), key); ok || err != nil {
					t.Errorf("HasBlob = %v, %v after a zip failed its check; want nothing stored", ok, err)
				}
				checkSpoolEmpty(t, tg)
				return
			}
			if !storedWithin(t, tg, key, 10*time.Second) {
				t.Errorf("the verified zip was not stored")
			}
			r := get(t, tg.url, path) // a hit
			if r.status != http.StatusOK || sha256.Sum256(r.body) != sha256.Sum256(body) {
				t.Errorf("from the cache: %d, %d bytes; want the zip", r.status, len(r.body))
			}
		})
	}
}

// TestGateStreamWaitsForLookup checks that a streamed answer starts only
// once the checksum-database record is proven: with the record missing
// from the database, the client gets the error answer with the reason,
// not a zip cut short.
func TestGateStreamWaitsForLookup(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	body, err := os.ReadFile(writeOtherZip(t, m, streamZipSize))
	if err != nil {
		t.Fatal(err)
	}
	path := fakeupstream.ZipPath(m)
	tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	r := get(t, tg.url, path)
	checkErrorBody(t, "zip not in the checksum database", r, http.StatusBadGateway, "not in the checksum database")
	checkSpoolEmpty(t, tg)
}

// writeOtherZip writes a valid module zip of m, of the size
// fakeupstream.AddLargeModule makes, with other data, and returns its path.
func writeOtherZip(t *testing.T, m module.Version, size int64) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "other.zip")
	if err := fakeupstream.WriteOtherLargeZip(file, m, size); err != nil {
		t.Fatal(err)
	}
	return file
}
