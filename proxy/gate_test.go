package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/fakeupstream"
)

func TestGateServesModuleFiles(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tests := []struct {
		path, ctype string
	}{
		{"/example.com/lib/@v/list", textPlain},
		{"/example.com/lib/@latest", "application/json"},
		{modPath(t, libV110, ".info"), "application/json"},
		{modPath(t, libV110, ".mod"), textPlain},
		{modPath(t, libV110, ".zip"), "application/zip"},
		{modPath(t, libV120, ".mod"), textPlain},
		{"/example.com/!upper/@v/list", textPlain},
		{modPath(t, upperV100, ".info"), "application/json"},
		{modPath(t, upperV100, ".mod"), textPlain},
		{modPath(t, upperV100, ".zip"), "application/zip"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			want := upstreamBytes(t, tg.fake, tt.path)
			for i, what := range []string{"cold", "cached"} {
				r := get(t, tg.url, tt.path)
				if r.status != http.StatusOK {
					t.Fatalf("%s GET: %d %q", what, r.status, r.body)
				}
				if !bytes.Equal(r.body, want) {
					t.Errorf("%s GET: body differs from the upstream's:\n got %q\nwant %q", what, trim(r.body), trim(want))
				}
				if ct := r.header.Get("Content-Type"); ct != tt.ctype {
					t.Errorf("%s GET: Content-Type %q, want %q", what, ct, tt.ctype)
				}
				if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
					t.Errorf("%s GET: Content-Length %q, want %d", what, cl, len(want))
				}
				if n := tg.fake.Requests(tt.path); n != 1 {
					t.Errorf("after the %s GET (#%d) the upstream saw %d requests for %s, want 1", what, i+1, n, tt.path)
				}
			}
		})
	}
	// The zip the gate serves is the one the checksum database vouches for.
	r := get(t, tg.url, modPath(t, libV110, ".zip"))
	if zipH1, _ := tg.fake.GoSum(libV110); zipHash(t, r.body) != zipH1 {
		t.Errorf("served zip of %s hashes to %s, want %s", libV110, zipHash(t, r.body), zipH1)
	}
}

// trim shortens a body for messages.
func trim(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}

// TestGateIncompatible serves a +incompatible version, as proxy.golang.org
// serves github.com/docker/docker: every file and the lookup are requested
// by that exact, canonical version (module.CanonicalVersion).
func TestGateIncompatible(t *testing.T) {
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	m, err := fake.AddArchive("example.com_incompat_v2.0.0+incompatible.txt",
		[]byte("-- incompat.go --\npackage incompat\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGate(t, fake, gateOptions{})
	for _, tt := range []struct{ path string }{
		{"/example.com/incompat/@v/list"},
		{"/example.com/incompat/@latest"},
		{modPath(t, m, ".info")},
		{modPath(t, m, ".mod")},
		{modPath(t, m, ".zip")},
		{"/sumdb/sum.golang.org/lookup/example.com/incompat@v2.0.0+incompatible"},
	} {
		path := tt.path
		t.Run(path, func(t *testing.T) {
			r := get(t, tg.url, path)
			if r.status != http.StatusOK {
				t.Errorf("GET %s: %d %q, want 200", path, r.status, r.body)
				return
			}
			if strings.HasPrefix(path, "/sumdb/") {
				return
			}
			if want := upstreamBytes(t, fake, path); !bytes.Equal(r.body, want) {
				t.Errorf("GET %s: body differs from the upstream's", path)
			}
		})
	}
}

func TestGateRejectsMismatchedZip(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	path := modPath(t, libV110, ".zip")
	key := "zip/example.com/lib/@v/v1.1.0"

	tg.fake.SetZipMismatch(libV110, true)
	r := get(t, tg.url, path)
	checkErrorBody(t, "mismatched zip", r, http.StatusBadGateway, "example.com/lib@v1.1.0", "checksum database")
	if why := goShows(string(r.body)); why != "" {
		t.Errorf("body %q: the go command would not show it all: %s", r.body, why)
	}
	if ok, err := tg.cache.HasBlob(t.Context(), key); ok || err != nil {
		t.Errorf("after the mismatch HasBlob(%s) = %v, %v; want nothing stored", key, ok, err)
	}
	checkSpoolEmpty(t, tg)

	tg.fake.SetZipMismatch(libV110, false)
	r = get(t, tg.url, path)
	if r.status != http.StatusOK {
		t.Fatalf("after the fault: %d %q, want 200", r.status, r.body)
	}
	if zipH1, _ := tg.fake.GoSum(libV110); zipHash(t, r.body) != zipH1 {
		t.Errorf("served zip hashes to %s, want the checksum database's %s", zipHash(t, r.body), zipH1)
	}
	if n := tg.fake.Requests(path); n != 2 {
		t.Errorf("the upstream saw %d requests for the zip, want 2 (the bad one was not cached)", n)
	}
}

// checkSpoolEmpty fails t if a spool file was left behind.
func checkSpoolEmpty(t *testing.T, tg *testGate) {
	t.Helper()
	ents, err := os.ReadDir(tg.gate.cfg.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("spool file left behind: %s", e.Name())
	}
}

func TestGateRejectsBadSmallFiles(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		key    string // cache key that must stay empty
		fault  func(f *fakeupstream.Server, on bool)
		wantIn []string
	}{
		{"mod mismatch", "/example.com/lib/@v/v1.1.0.mod", "mod/example.com/lib/@v/v1.1.0",
			func(f *fakeupstream.Server, on bool) { f.SetModMismatch(libV110, on) },
			[]string{"go.mod", "example.com/lib@v1.1.0", "checksum database"}},
		{"info for another version", "/example.com/lib/@v/v1.1.0.info", "info/example.com/lib/@v/v1.1.0",
			func(f *fakeupstream.Server, on bool) { f.SetInfoVersion(libV110, map[bool]string{true: "v1.0.0"}[on]) },
			[]string{"example.com/lib@v1.1.0", "v1.0.0"}},
		{"info naming an invalid version", "/example.com/lib/@v/v1.1.0.info", "info/example.com/lib/@v/v1.1.0",
			func(f *fakeupstream.Server, on bool) { f.SetInfoVersion(libV110, map[bool]string{true: "master"}[on]) },
			[]string{"example.com/lib@v1.1.0", "master"}},
		{"info not JSON", "/example.com/lib/@v/v1.1.0.info", "info/example.com/lib/@v/v1.1.0",
			func(f *fakeupstream.Server, on bool) {
				f.Handle("/example.com/lib/@v/v1.1.0.info", onOff(on, func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "<html>")
				}))
			},
			[]string{"JSON"}},
		{"list with junk", "/example.com/lib/@v/list", "list/example.com/lib",
			func(f *fakeupstream.Server, on bool) {
				f.Handle("/example.com/lib/@v/list", onOff(on, func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "v1.0.0\n../../etc\n")
				}))
			},
			[]string{"example.com/lib", "invalid version"}},
		{"mod not in the checksum database", "/example.com/lib/@v/v1.3.0.mod", "mod/example.com/lib/@v/v1.3.0",
			func(f *fakeupstream.Server, on bool) {
				f.Handle("/example.com/lib/@v/v1.3.0.mod", onOff(on, func(w http.ResponseWriter, r *http.Request) {
					io.WriteString(w, "module example.com/lib\n")
				}))
			},
			[]string{"example.com/lib@v1.3.0", "not in the checksum database"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{})
			tt.fault(tg.fake, true)
			r := get(t, tg.url, tt.path)
			checkErrorBody(t, "GET "+tt.path, r, http.StatusBadGateway, tt.wantIn...)
			if _, err := tg.cache.Get(t.Context(), tt.key); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("cache.Get(%s) = %v, want ErrNotFound: a rejected file was stored", tt.key, err)
			}
			tt.fault(tg.fake, false)
			if strings.Contains(tt.path, "v1.3.0") {
				return // there is no good version to fall back to
			}
			r = get(t, tg.url, tt.path)
			if want := upstreamBytes(t, tg.fake, tt.path); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
				t.Errorf("after the fault: %d %q, want 200 and the upstream's %q", r.status, r.body, want)
			}
		})
	}
}

// onOff returns h if on, else nil.
func onOff(on bool, h http.HandlerFunc) http.HandlerFunc {
	if on {
		return h
	}
	return nil
}

// fetch is a GET for goroutines: it reports errors instead of failing.
func fetch(ctx context.Context, u string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestGateSingleflight(t *testing.T) {
	const n = 50
	tests := []struct {
		name string
		path string
	}{
		{"zip", modPath(t, libV120, ".zip")},
		{"mod", modPath(t, libV120, ".mod")},
		{"list", "/example.com/lib/@v/list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{})
			want := upstreamBytes(t, tg.fake, tt.path)
			// Slow the upstream down a little so that all requests overlap.
			start := make(chan struct{})
			tg.fake.Handle(tt.path, func(w http.ResponseWriter, r *http.Request) {
				<-start
				time.Sleep(50 * time.Millisecond)
				w.Write(want)
			})
			var wg sync.WaitGroup
			bodies := make([][]byte, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					status, body, err := fetch(t.Context(), tg.url+tt.path)
					if err == nil && status != http.StatusOK {
						err = fmt.Errorf("status %d: %q", status, body)
					}
					bodies[i], errs[i] = body, err
				})
			}
			time.Sleep(100 * time.Millisecond) // let the requests arrive
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Errorf("request %d: %v", i, errs[i])
				} else if !bytes.Equal(bodies[i], want) {
					t.Errorf("request %d: body differs from the upstream's", i)
				}
			}
			if got := tg.fake.Requests(tt.path); got != 1 {
				t.Errorf("%d concurrent cold requests made %d upstream requests for %s, want 1", n, got, tt.path)
			}
		})
	}
}

// missHook is a Cache that calls hook once, after the first miss of key.
type missHook struct {
	Cache
	key  string
	mu   sync.Mutex
	hook func()
}

func (c *missHook) OpenBlob(ctx context.Context, key string) (*cache.Blob, error) {
	b, err := c.Cache.OpenBlob(ctx, key)
	if errors.Is(err, cache.ErrNotFound) && key == c.key {
		c.mu.Lock()
		h := c.hook
		c.hook = nil
		c.mu.Unlock()
		if h != nil {
			h()
		}
	}
	return b, err
}

// TestGateNoRefetchAfterLateMiss checks "one upstream fetch per key": a
// request that missed the cache just before another request stored the zip
// must use the stored zip, not fetch it again. singleflight only merges
// calls that overlap, so the fetch must look at the cache again.
func TestGateNoRefetchAfterLateMiss(t *testing.T) {
	missed, firstDone := make(chan struct{}), make(chan struct{})
	hook := &missHook{key: "zip/example.com/lib/@v/v1.2.0", hook: func() {
		close(missed)
		<-firstDone
	}}
	tg := newTestGate(t, nil, gateOptions{WrapCache: func(c Cache) Cache { hook.Cache = c; return hook }})
	path := modPath(t, libV120, ".zip")
	late := make(chan int, 1)
	go func() {
		status, _, _ := fetch(t.Context(), tg.url+path)
		late <- status
	}()
	<-missed // the late request has seen a miss and waits
	if r := get(t, tg.url, path); r.status != http.StatusOK {
		t.Fatalf("first request: %d %q", r.status, r.body)
	}
	close(firstDone)
	if status := <-late; status != http.StatusOK {
		t.Fatalf("late request: status %d", status)
	}
	if n := tg.fake.Requests(path); n != 1 {
		t.Errorf("the upstream saw %d requests for %s, want 1: the late request fetched a zip already stored", n, path)
	}
}

func TestGateListTTL(t *testing.T) {
	const ttl = time.Minute
	tests := []struct {
		name, path string
		wantFresh  string // in the body once v1.3.0 is published
	}{
		{"list", "/example.com/lib/@v/list", "v1.3.0\n"},
		{"latest", "/example.com/lib/@latest", `"Version":"v1.3.0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{ListTTL: ttl})
			f := tg.fake
			requests := func() int { return f.Requests(tt.path) }

			f.SetStatus(tt.path, http.StatusInternalServerError)
			checkErrorBody(t, "cold with a failing upstream", get(t, tg.url, tt.path), http.StatusBadGateway, "500")
			f.SetStatus(tt.path, 0)

			old := upstreamBytes(t, f, tt.path)
			if r := get(t, tg.url, tt.path); r.status != 200 || !bytes.Equal(r.body, old) || requests() != 1 {
				t.Fatalf("first: %d %q after %d upstream requests, want 200 %q after 1", r.status, r.body, requests(), old)
			}
			tg.clock.Advance(ttl / 2)
			if r := get(t, tg.url, tt.path); r.status != 200 || !bytes.Equal(r.body, old) || requests() != 1 {
				t.Errorf("within the TTL: %d %q after %d upstream requests, want the cached copy and no request", r.status, r.body, requests())
			}

			tg.clock.Advance(ttl)
			f.SetStatus(tt.path, http.StatusInternalServerError)
			if r := get(t, tg.url, tt.path); r.status != 200 || !bytes.Equal(r.body, old) || requests() != 2 {
				t.Errorf("stale, upstream failing: %d %q after %d upstream requests, want the stale copy after 2", r.status, r.body, requests())
			}
			f.SetStatus(tt.path, 0)

			if _, err := f.AddArchive("example.com_lib_v1.3.0.txt", []byte("-- go.mod --\nmodule example.com/lib\n-- lib.go --\npackage lib\n")); err != nil {
				t.Fatal(err)
			}
			r := get(t, tg.url, tt.path)
			if r.status != 200 || !strings.Contains(string(r.body), tt.wantFresh) || requests() != 3 {
				t.Errorf("stale, upstream working: %d %q after %d upstream requests, want a fresh copy with %q after 3", r.status, r.body, requests(), tt.wantFresh)
			}
			if r2 := get(t, tg.url, tt.path); !bytes.Equal(r2.body, r.body) || requests() != 3 {
				t.Errorf("fresh copy not cached: %d upstream requests, want 3", requests())
			}
		})
	}
}

func TestGateOffline(t *testing.T) {
	dir := t.TempDir()
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	key := newNoteKey(t, fake.Name())
	warm := []string{
		"/example.com/lib/@v/list",
		"/example.com/lib/@latest",
		modPath(t, libV100, ".info"),
		modPath(t, libV100, ".mod"),
		modPath(t, libV100, ".zip"),
		"/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0",
	}
	online := newTestGate(t, fake, gateOptions{Dir: dir, Key: key})
	want := map[string][]byte{}
	for _, p := range warm {
		r := get(t, online.url, p)
		if r.status != http.StatusOK {
			t.Fatalf("online GET %s: %d %q", p, r.status, r.body)
		}
		want[p] = r.body
	}
	online.close(t)

	fake.ResetCounts()
	tg := newTestGate(t, fake, gateOptions{Dir: dir, Key: key, Offline: true})
	tg.clock.Advance(24 * time.Hour) // every list is stale now
	for _, p := range warm {
		t.Run("hit "+p, func(t *testing.T) {
			r := get(t, tg.url, p)
			if r.status != http.StatusOK || !bytes.Equal(r.body, want[p]) {
				t.Errorf("offline GET %s: %d %q, want 200 and the body served online", p, r.status, trim(r.body))
			}
		})
	}
	t.Run("hit /sumdb/sum.golang.org/latest", func(t *testing.T) {
		r := get(t, tg.url, "/sumdb/sum.golang.org/latest")
		if r.status != http.StatusOK {
			t.Fatalf("offline latest: %d %q, want the newest witnessed tree head", r.status, r.body)
		}
		openNote(t, r.body, key.vkey, fake.VerifierKey())
	})
	for _, p := range []string{
		modPath(t, libV110, ".zip"),
		modPath(t, libV110, ".mod"),
		modPath(t, libV110, ".info"),
		"/example.com/dep/@v/list",
		"/example.com/dep/@latest",
		"/sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0",
	} {
		t.Run("miss "+p, func(t *testing.T) {
			checkErrorBody(t, "offline miss", get(t, tg.url, p), http.StatusGatewayTimeout, "not in the cache")
		})
	}
	if log := fake.RequestLog(); len(log) != 0 {
		t.Errorf("the offline gate reached the upstream: %q", log)
	}
}

func TestGateUpstreamNotFound(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	tests := []struct {
		path string
		want int
	}{
		{"/example.com/nope/@v/list", 404},
		{"/example.com/nope/@latest", 404},
		{"/example.com/lib/@v/v1.9.9.info", 404},
		{"/example.com/lib/@v/v1.9.9.mod", 404},
		{"/example.com/lib/@v/v1.9.9.zip", 404},
		{"/example.com/lib/@v/nobranch.info", 404},
		{"/sumdb/sum.golang.org/lookup/example.com/nope@v1.0.0", 404},
		{"/sumdb/other.example/supported", 404},
		{"/sumdb/other.example/lookup/example.com/lib@v1.0.0", 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			for i := range 2 {
				r := get(t, tg.url, tt.path)
				checkErrorBody(t, "GET "+tt.path, r, tt.want)
				if why := goShows(string(r.body)); why != "" {
					t.Errorf("body %q: the go command would not show it all: %s", r.body, why)
				}
				if n := tg.fake.Requests(tt.path); !strings.Contains(tt.path, "other.example") && n != i+1 {
					t.Errorf("after %d GETs the upstream saw %d requests; a 404 must not be cached", i+1, n)
				}
			}
		})
	}
	t.Run("410", func(t *testing.T) {
		tg.fake.SetStatus("/example.com/dep/", http.StatusGone)
		defer tg.fake.SetStatus("/example.com/dep/", 0)
		for _, p := range []string{"/example.com/dep/@v/list", modPath(t, depV100, ".info"), modPath(t, depV100, ".zip")} {
			checkErrorBody(t, "GET "+p, get(t, tg.url, p), http.StatusGone)
		}
	})
}

func TestGateRejectsTruncatedZip(t *testing.T) {
	tests := []struct {
		name string
		// serve answers with a broken version of the good zip.
		serve func(w http.ResponseWriter, good []byte)
	}{
		{"short body, declared length", func(w http.ResponseWriter, good []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(good)))
			w.Write(good[:len(good)/2])
		}},
		{"declared length too large", func(w http.ResponseWriter, good []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(len(good)+100))
			w.Write(good)
		}},
		{"connection closed mid-body", func(w http.ResponseWriter, good []byte) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nContent-Length: %d\r\n\r\n", len(good))
			buf.Write(good[:len(good)/3])
			buf.Flush()
		}},
		{"chunked body cut", func(w http.ResponseWriter, good []byte) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(good)/2)
			buf.Write(good[:len(good)/2])
			buf.Flush()
		}},
		{"EOF-delimited half body", func(w http.ResponseWriter, good []byte) {
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\n")
			buf.Write(good[:len(good)/2])
			buf.Flush()
		}},
		{"declared over 500 MiB", func(w http.ResponseWriter, good []byte) {
			w.Header().Set("Content-Length", strconv.Itoa(600<<20))
			w.Write(good)
		}},
		{"not a zip", func(w http.ResponseWriter, good []byte) {
			w.Write(bytes.Repeat([]byte("x"), len(good)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{})
			path := modPath(t, libV100, ".zip")
			good := upstreamBytes(t, tg.fake, path)
			tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) { tt.serve(w, good) })
			r := get(t, tg.url, path)
			checkErrorBody(t, "broken zip", r, http.StatusBadGateway)
			if ok, err := tg.cache.HasBlob(t.Context(), "zip/example.com/lib/@v/v1.0.0"); ok || err != nil {
				t.Errorf("HasBlob = %v, %v after a broken zip; want nothing stored", ok, err)
			}
			checkSpoolEmpty(t, tg)

			tg.fake.Handle(path, nil)
			r = get(t, tg.url, path)
			if r.status != http.StatusOK || !bytes.Equal(r.body, good) {
				t.Errorf("after the fault: %d, want 200 and the good zip", r.status)
			}
		})
	}
}

func TestGatePrivateModules(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{Private: []string{"example.com/dep"}})
	for _, p := range []string{modPath(t, depV100, ".mod"), modPath(t, depV100, ".zip")} {
		want := upstreamBytes(t, tg.fake, p)
		if r := get(t, tg.url, p); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
			t.Errorf("GET %s: %d %q, want 200 and the upstream's bytes", p, r.status, trim(r.body))
		}
	}
	// A lookup of a private module is refused by the gate itself, on both
	// the GOPROXY path and the sum.golang.org one.
	lookup := "/sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0"
	checkErrorBody(t, "private lookup", get(t, tg.url, lookup), http.StatusForbidden, "example.com/dep is private (pattern example.com/dep)")
	checkErrorBody(t, "private lookup of a sub-module", get(t, tg.url, "/sumdb/sum.golang.org/lookup/example.com/dep/sub@v1.0.0"),
		http.StatusForbidden, "GONOSUMDB=example.com/dep")
	for _, p := range tg.fake.RequestLog() {
		if strings.HasPrefix(p, "/sumdb/") && strings.Contains(p, "example.com/dep") {
			t.Errorf("a private module reached the checksum database: %s", p)
		}
	}
	// A module that is not private is still checked.
	tg.fake.SetZipMismatch(libV100, true)
	checkErrorBody(t, "public mismatch", get(t, tg.url, modPath(t, libV100, ".zip")), http.StatusBadGateway, "checksum database")
}

// TestGateFirstCallerGone checks that a shared fetch survives the request
// that started it: a client that gives up does not fail the others.
func TestGateFirstCallerGone(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	path := modPath(t, libV120, ".zip")
	good := upstreamBytes(t, tg.fake, path)
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	tg.fake.Handle(path, func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(arrived) })
		<-release
		w.Write(good)
	})
	firstCtx, cancelFirst := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { _, _, err := fetch(firstCtx, tg.url+path); first <- err }()
	<-arrived
	second := make(chan []byte, 1)
	go func() {
		status, body, err := fetch(t.Context(), tg.url+path)
		if err != nil || status != http.StatusOK {
			body = []byte(fmt.Sprintf("%d %v %s", status, err, body))
		}
		second <- body
	}()
	time.Sleep(50 * time.Millisecond) // let the second request join the fetch
	cancelFirst()
	if err := <-first; err == nil {
		t.Errorf("the first request was not cancelled")
	}
	close(release)
	if body := <-second; !bytes.Equal(body, good) {
		t.Errorf("second request: %q, want the zip", trim(body))
	}
	if n := tg.fake.Requests(path); n != 1 {
		t.Errorf("the upstream saw %d requests, want 1", n)
	}
	// A streamed answer completes once the zip is verified; it is stored
	// just after, before the request's handler returns.
	if !storedWithin(t, tg, "zip/example.com/lib/@v/v1.2.0", 10*time.Second) {
		t.Errorf("the zip was not stored")
	}
}

// storedWithin reports whether a blob is stored under key within d.
func storedWithin(t *testing.T, tg *testGate, key string, d time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := tg.cache.HasBlob(t.Context(), key); ok || time.Now().After(deadline) {
			return ok
		}
	}
}

func TestGateHeadAndRange(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	zpath := modPath(t, libV100, ".zip")
	zip := upstreamBytes(t, tg.fake, zpath)
	size := len(zip)

	// A cold HEAD fetches, verifies and stores the zip like a GET.
	r := do(t, nil, http.MethodHead, tg.url, zpath)
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("Content-Length") != strconv.Itoa(size) {
		t.Errorf("cold HEAD: %d, %d body bytes, Content-Length %q; want 200, none, %d", r.status, len(r.body), r.header.Get("Content-Length"), size)
	}
	tests := []struct {
		name, rng  string
		wantStatus int
		want       []byte // body
	}{
		{"first bytes", "bytes=0-9", http.StatusPartialContent, zip[:10]},
		{"middle", "bytes=10-29", http.StatusPartialContent, zip[10:30]},
		{"suffix", "bytes=-20", http.StatusPartialContent, zip[size-20:]},
		{"open end", fmt.Sprintf("bytes=%d-", size-5), http.StatusPartialContent, zip[size-5:]},
		{"past the end", fmt.Sprintf("bytes=%d-", size+10), http.StatusRequestedRangeNotSatisfiable, nil},
		{"whole", "", http.StatusOK, zip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.rng != "" {
				hdr = append(hdr, "Range: "+tt.rng)
			}
			r := get(t, tg.url, zpath, hdr...)
			if r.status != tt.wantStatus {
				t.Fatalf("Range %q: status %d, want %d", tt.rng, r.status, tt.wantStatus)
			}
			if tt.want != nil && !bytes.Equal(r.body, tt.want) {
				t.Errorf("Range %q: %d bytes, want %d", tt.rng, len(r.body), len(tt.want))
			}
			if tt.want != nil && r.header.Get("Content-Length") != strconv.Itoa(len(tt.want)) {
				t.Errorf("Range %q: Content-Length %q, want %d", tt.rng, r.header.Get("Content-Length"), len(tt.want))
			}
		})
	}
	if n := tg.fake.Requests(zpath); n != 1 {
		t.Errorf("the upstream saw %d requests for the zip, want 1", n)
	}
	for _, p := range []string{"/example.com/lib/@v/list", "/example.com/lib/@latest", modPath(t, libV100, ".mod"), modPath(t, libV100, ".info"), "/sumdb/sum.golang.org/supported"} {
		t.Run("HEAD "+p, func(t *testing.T) {
			want := get(t, tg.url, p)
			r := do(t, nil, http.MethodHead, tg.url, p)
			if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("Content-Length") != strconv.Itoa(len(want.body)) {
				t.Errorf("HEAD: %d, %d body bytes, Content-Length %q; want 200, none, %d", r.status, len(r.body), r.header.Get("Content-Length"), len(want.body))
			}
		})
	}
}
