package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// pausedReader gives the first n bytes of data, then waits for release,
// then gives the rest, or fails with err if err is set.
type pausedReader struct {
	data    []byte
	n       int
	off     int
	release <-chan struct{}
	err     error
}

func (p *pausedReader) Read(b []byte) (int, error) {
	if p.off == p.n {
		<-p.release
		if p.err != nil {
			return 0, p.err
		}
	}
	end := len(p.data)
	if p.off < p.n {
		end = p.n
	}
	if p.off == len(p.data) {
		return 0, io.EOF
	}
	n := copy(b, p.data[p.off:end])
	p.off += n
	return n, nil
}

// awaitSpoolEmpty waits up to 5 s for the spool directory to be empty,
// then fails t if it is not.
func awaitSpoolEmpty(t *testing.T, tg *testGate) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ents, err := os.ReadDir(tg.gate.cfg.SpoolDir); err == nil && len(ents) == 0 {
			return
		}
	}
	checkSpoolEmpty(t, tg)
}

// TestSecondLevelStreamsLargeZip checks what a client of gate b sees of a
// large zip that gate a verified and shared, while the second level's
// reader is paused half-way:
//   - chunks checked by the second level: the first half reaches the
//     client before the rest is read; the answer completes only once the
//     whole zip matches its SHA-256, with no upstream request;
//   - a chunk failing its check after the first half, or a whole that does
//     not match the recorded SHA-256: the answer is cut short, never
//     complete, and nothing of it is kept (the next client gets the zip
//     whole);
//   - chunks not checked (an object stored before chunk sums): nothing is
//     sent before the whole zip matches.
func TestSecondLevelStreamsLargeZip(t *testing.T) {
	tests := []struct {
		name     string
		checked  bool  // the second level checks each chunk
		err      error // the reader fails after the first half
		wrongSum bool  // the recorded SHA-256 is another
		complete bool  // the first client gets the whole zip
	}{
		{"checked chunks stream", true, nil, false, true},
		{"chunk fails its check", true, errors.New("chunk 3 does not match its SHA-256"), false, false},
		{"whole fails its SHA-256", true, nil, true, false},
		{"unchecked chunks wait for the whole", false, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, sl, _ := twoGates(t)
			m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
			zipFile, err := a.fake.AddLargeModule(m, streamZipSize, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(zipFile)
			if err != nil {
				t.Fatal(err)
			}
			path, key := fakeupstream.ZipPath(m), "zip/example.com/large/@v/v1.0.0"
			if r := get(t, a.url, path); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
				t.Fatalf("gate a: %d", r.status)
			}
			if _, ok := sl.await(key, nil); !ok {
				t.Fatal("gate a did not share the zip")
			}
			release := make(chan struct{})
			sl.setReader(func(data []byte, meta SharedMeta) (io.Reader, SharedMeta) {
				meta.ChunksChecked = tt.checked
				if tt.wrongSum {
					meta.SHA256[0] ^= 1
				}
				return &pausedReader{data: data, n: len(data) / 2, release: release, err: tt.err}, meta
			})
			answered := make(chan *http.Response, 1)
			go func() {
				resp, err := http.Get(b.url + path)
				if err != nil {
					t.Error(err)
					close(answered)
					return
				}
				answered <- resp
			}()
			var resp *http.Response
			if tt.checked {
				resp = <-answered
				if resp == nil {
					return
				}
				defer resp.Body.Close()
				if _, err := io.ReadFull(resp.Body, make([]byte, len(want)/2)); err != nil {
					t.Fatalf("reading the first half before the second level gave the rest: %v", err)
				}
			} else {
				select {
				case resp = <-answered:
					t.Fatalf("an answer (%d) started before the unchecked zip was read whole", resp.StatusCode)
				case <-time.After(300 * time.Millisecond):
				}
			}
			close(release)
			if resp == nil {
				if resp = <-answered; resp == nil {
					return
				}
				defer resp.Body.Close()
			}
			rest, err := io.ReadAll(resp.Body)
			got := len(rest)
			if tt.checked {
				got += len(want) / 2
			}
			if !tt.complete {
				if err == nil || got >= len(want) || got > len(want)-holdBack {
					t.Fatalf("%d of %d bytes, error %v; want the answer cut short before the held-back tail",
						got, len(want), err)
				}
				// Nothing of it kept: the next client gets the zip whole, read
				// again from the second level (or fetched again).
				sl.setReader(nil)
				if r := get(t, b.url, path); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
					t.Fatalf("the next client of gate b: %d, equal %v", r.status, bytes.Equal(r.body, want))
				}
				awaitSpoolEmpty(t, b)
				return
			}
			if err != nil || got != len(want) || !bytes.Equal(rest, want[len(want)-len(rest):]) {
				t.Fatalf("%d of %d bytes, error %v; want the whole zip", got, len(want), err)
			}
			if n := a.fake.Requests(path); n != 1 {
				t.Fatalf("%d upstream requests, want 1", n)
			}
			if !storedWithin(t, b, key, 10*time.Second) {
				t.Fatal("gate b did not store the zip")
			}
			awaitSpoolEmpty(t, b) // removed just after the store
		})
	}
}
