package proxy

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/signer"
)

// Module versions of testdata/modules used by the tests.
var (
	libV100   = module.Version{Path: "example.com/lib", Version: "v1.0.0"}
	libV110   = module.Version{Path: "example.com/lib", Version: "v1.1.0"}
	libV120   = module.Version{Path: "example.com/lib", Version: "v1.2.0"}
	depV100   = module.Version{Path: "example.com/dep", Version: "v1.0.0"}
	upperV100 = module.Version{Path: "example.com/Upper", Version: "v1.0.0"}
)

// textPlain is the content type of every error body.
const textPlain = "text/plain; charset=utf-8"

// testClock is a clock that tests move by hand. It is safe for concurrent use.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

// Now returns the clock's time.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gateOptions configures newTestGate. The zero value means an online gate
// over an in-memory cache with a fresh enterprise key and the default TTL.
type gateOptions struct {
	Dir      string        // cache directory; "" means in memory
	Offline  bool          // Config.Offline
	ListTTL  time.Duration // Config.ListTTL
	Key      *noteKey      // enterprise note key; nil generates one
	Private  []string      // Config.Private
	Userinfo *url.Userinfo // credentials in the upstream URL
	// WrapCache, if set, wraps the cache the gate sees (not the witness's).
	WrapCache func(Cache) Cache
	// Logger is the gate's logger (its access log); nil means zap.NewNop().
	Logger *zap.Logger
	// Policy, if set, is the module policy in force.
	Policy *policy.Policy
	// SecondLevel and Leases, if set, make the gate one of a cluster.
	SecondLevel SecondLevel
	Leases      FetchLeases
	// Prefetch is Config.Prefetch; the workers run until the test ends.
	Prefetch int
}

// noteKey is an enterprise note key.
type noteKey struct{ skey, vkey string }

// newNoteKey generates a note key named name.
func newNoteKey(t *testing.T, name string) *noteKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return &noteKey{skey, vkey}
}

// testGate is a Gate wired as cmd/modgate wires it, over a fake upstream,
// and served as a GOPROXY endpoint by an httptest server.
type testGate struct {
	fake    *fakeupstream.Server
	gate    *Gate
	cache   *cache.Store
	witness *signer.Witness
	clock   *testClock
	key     *noteKey // the enterprise note key
	url     string   // base URL of the GOPROXY endpoint
	srv     *httptest.Server
}

// newTestGate builds a gate over fake (a new fake upstream if nil).
func newTestGate(t *testing.T, fake *fakeupstream.Server, o gateOptions) *testGate {
	t.Helper()
	ctx := t.Context()
	if fake == nil {
		fake = fakeupstream.Start(t, fakeupstream.Options{})
	}
	tg := &testGate{fake: fake, clock: newTestClock(), key: o.Key}
	if tg.key == nil {
		tg.key = newNoteKey(t, fake.Name())
	}
	sig, err := note.NewSigner(tg.key.skey)
	if err != nil {
		t.Fatal(err)
	}
	cc := cache.Config{Dir: o.Dir, InMemory: o.Dir == "", Now: tg.clock.Now}
	if tg.cache, err = cache.Open(ctx, cc); err != nil {
		t.Fatalf("cache.Open: %v", err)
	}
	t.Cleanup(func() { tg.cache.Close() })
	upstreamURL, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	upstreamURL.User = o.Userinfo
	client := newHTTPClient(nil)
	t.Cleanup(client.CloseIdleConnections)
	remote := NewSumDBRemote(fake.Name(), nil, upstreamURL, client, o.Offline)
	tg.witness, err = signer.New(ctx, signer.Config{
		Upstream: fake.VerifierKey(), Signer: sig, Store: WitnessStore{Cache: tg.cache},
		Remote: remote, Logger: zap.NewNop(), Now: tg.clock.Now,
	})
	if err != nil {
		t.Fatalf("signer.New: %v", err)
	}
	var c Cache = tg.cache
	if o.WrapCache != nil {
		c = o.WrapCache(c)
	}
	tg.gate, err = New(Config{
		Upstream: upstreamURL, HTTPClient: client, Cache: c, Witness: tg.witness,
		Private: o.Private, Offline: o.Offline, ListTTL: o.ListTTL, SpoolDir: t.TempDir(),
		Logger: o.Logger, Now: tg.clock.Now, SecondLevel: o.SecondLevel, Leases: o.Leases, Prefetch: o.Prefetch,
	})
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	if o.Policy != nil {
		tg.gate.cfg.Policy = func() *policy.Policy { return o.Policy }
	}
	if o.Prefetch > 0 {
		pctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			tg.gate.RunPrefetch(pctx)
		}()
		t.Cleanup(func() { stop(); <-done }) // before the cache closes
		for !tg.gate.prefetch.running.Load() {
			time.Sleep(time.Millisecond)
		}
	}
	tg.srv = httptest.NewServer(tg.gate)
	t.Cleanup(tg.srv.Close)
	tg.url = tg.srv.URL
	return tg
}

// close stops serving and closes the cache, so that another gate can open
// the same cache directory.
func (tg *testGate) close(t *testing.T) {
	t.Helper()
	tg.srv.Close()
	if err := tg.cache.Close(); err != nil {
		t.Fatalf("closing cache: %v", err)
	}
}

// response is a response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends method to base+rawPath, keeping rawPath byte for byte on the
// request line, with the given header lines ("Name: value").
func do(t *testing.T, client *http.Client, method, base, rawPath string, header ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath
	for _, h := range header {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, rawPath, err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// get is do with GET and the default client.
func get(t *testing.T, base, rawPath string, header ...string) response {
	t.Helper()
	return do(t, nil, http.MethodGet, base, rawPath, header...)
}

// upstreamBytes fetches path from the fake directly and then forgets the
// request, so that counts only show the gate's requests.
func upstreamBytes(t *testing.T, fake *fakeupstream.Server, path string) []byte {
	t.Helper()
	r := get(t, fake.URL, path)
	if r.status != http.StatusOK {
		t.Fatalf("upstream %s: %d %s", path, r.status, r.body)
	}
	fake.ResetCounts()
	return r.body
}

// zipHash returns dirhash.HashZip of a zip held in memory.
func zipHash(t *testing.T, data []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := dirhash.HashZip(file, dirhash.Hash1)
	if err != nil {
		t.Fatalf("hashing zip: %v", err)
	}
	return h
}

// modPath returns the escaped GOPROXY path of m's file with extension ext.
func modPath(t *testing.T, m module.Version, ext string) string {
	t.Helper()
	p, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		t.Fatal(err)
	}
	return "/" + p + "/@v/" + v + ext
}

// checkErrorBody fails t unless r is an error answer with status want that
// the go command shows: text/plain, starting with "modgate: ", and with
// every substring of wantIn.
func checkErrorBody(t *testing.T, what string, r response, want int, wantIn ...string) {
	t.Helper()
	if r.status != want {
		t.Errorf("%s: status %d, want %d; body %q", what, r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != textPlain {
		t.Errorf("%s: Content-Type %q, want %q", what, ct, textPlain)
	}
	if !strings.HasPrefix(string(r.body), "modgate: ") {
		t.Errorf("%s: body %q does not start with \"modgate: \"", what, r.body)
	}
	for _, s := range wantIn {
		if !strings.Contains(string(r.body), s) {
			t.Errorf("%s: body %q does not mention %q", what, r.body, s)
		}
	}
}

// goShows reports why the go command would not show body as the detail of
// an error (cmd/go/internal/web.formatErrorDetail), or "" if it would show
// all of it. The checks are stricter than the go command's: no line may be
// blank, since the go command drops everything after one.
func goShows(body string) string {
	switch {
	case !utf8.ValidString(body):
		return "not valid UTF-8"
	case len(body) > 648:
		return "longer than 648 bytes"
	case !strings.HasSuffix(body, "\n"):
		return "does not end in a newline"
	}
	for _, r := range body {
		if !unicode.IsGraphic(r) && !unicode.IsSpace(r) {
			return "has the non-printable rune " + strconv.QuoteRune(r)
		}
	}
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) > 8 {
		return "more than 8 lines"
	}
	for i, line := range lines {
		if strings.TrimSpace(line) == "" {
			return "line " + strconv.Itoa(i+1) + " is blank"
		}
	}
	return ""
}

// mustParseURL parses s or fails t.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
