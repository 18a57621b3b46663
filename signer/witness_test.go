package signer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// fakeDB is an upstream checksum database for witness tests.
type fakeDB struct {
	skey, vkey string
	mu         sync.Mutex
	handler    http.Handler
	honest     http.Handler                          // the handler before the first fork
	mutate     func(path string, body []byte) []byte // a fault, or nil
	reads      map[string]int
}

func gosum(prefix string) func(path, vers string) ([]byte, error) {
	return func(path, vers string) ([]byte, error) {
		if strings.HasPrefix(path, "missing.example") {
			return nil, fmt.Errorf("no such module: %w", errNotExist)
		}
		h := func(s string) string {
			sum := sha256.Sum256([]byte(prefix + s))
			return "h1:" + base64.StdEncoding.EncodeToString(sum[:])
		}
		return fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n", path, vers, h(path+vers), path, vers, h(path+vers+"mod")), nil
	}
}

var errNotExist = errors.New("not exist")

func newFakeDB(t *testing.T, name string) *fakeDB {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	db := &fakeDB{skey: skey, vkey: vkey, reads: map[string]int{}}
	db.handler = sumdb.NewServer(sumdb.NewTestServer(skey, gosum("")))
	return db
}

// fork replaces the database with one under the same key whose first record
// differs, so its trees are not extensions of the old ones.
func (db *fakeDB) fork(t *testing.T, mods ...module.Version) {
	ts := sumdb.NewTestServer(db.skey, gosum("fork"))
	for _, m := range mods {
		if _, err := ts.Lookup(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	db.mu.Lock()
	if db.honest == nil {
		db.honest = db.handler
	}
	db.handler = sumdb.NewServer(ts)
	db.mu.Unlock()
}

// unfork makes the database honest again: the timeline before the first fork.
func (db *fakeDB) unfork() {
	db.mu.Lock()
	if db.honest != nil {
		db.handler = db.honest
	}
	db.mu.Unlock()
}

func (db *fakeDB) ReadRemote(ctx context.Context, path string) ([]byte, error) {
	db.mu.Lock()
	h, mutate := db.handler, db.mutate
	db.reads[path]++
	db.mu.Unlock()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(ctx, "GET", path, nil))
	if rec.Code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", path, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	body := rec.Body.Bytes()
	if mutate != nil {
		body = mutate(path, body)
	}
	return body, nil
}

func (db *fakeDB) setMutate(f func(string, []byte) []byte) {
	db.mu.Lock()
	db.mutate = f
	db.mu.Unlock()
}

func (db *fakeDB) readCount(prefix string) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for p, c := range db.reads {
		if strings.HasPrefix(p, prefix) {
			n += c
		}
	}
	return n
}

type fixture struct {
	db          *fakeDB
	store       *MemStore
	w           *Witness
	ekey        string // enterprise verifier key
	signer      note.Signer
	upstreamKey string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := newFakeDB(t, "sum.golang.org")
	skey, vkey, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, store: &MemStore{}, ekey: vkey, signer: s, upstreamKey: db.vkey}
	f.w = f.reopen(t)
	return f
}

func (f *fixture) reopen(t *testing.T) *Witness {
	t.Helper()
	w, err := New(context.Background(), Config{Upstream: f.upstreamKey, Signer: f.signer, Store: f.store, Remote: f.db})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mods(n int) []module.Version {
	var out []module.Version
	for i := range n {
		out = append(out, module.Version{Path: fmt.Sprintf("example.com/m%d", i), Version: "v1.0.0"})
	}
	return out
}

// witnessOps is a sumdb.ClientOps that reads through a Witness, as the go
// command reads through modgate.
type witnessOps struct {
	w      *Witness
	config map[string][]byte
	mu     sync.Mutex
	errs   []string
}

func (o *witnessOps) ReadRemote(path string) ([]byte, error) {
	ctx := context.Background()
	switch {
	case strings.HasPrefix(path, "/lookup/"):
		m, err := parseLookup(strings.TrimPrefix(path, "/lookup/"))
		if err != nil {
			return nil, err
		}
		return o.w.Lookup(ctx, m)
	case strings.HasPrefix(path, "/tile/"):
		t, err := tlog.ParseTilePath(path[1:])
		if err != nil {
			return nil, err
		}
		return o.w.Tile(ctx, t)
	}
	return nil, fmt.Errorf("unexpected path %s", path)
}

func parseLookup(s string) (module.Version, error) {
	p, v, _ := strings.Cut(s, "@")
	path, err := module.UnescapePath(p)
	if err != nil {
		return module.Version{}, err
	}
	vers, err := module.UnescapeVersion(v)
	return module.Version{Path: path, Version: vers}, err
}

func (o *witnessOps) ReadConfig(file string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.HasSuffix(file, "/latest") {
		return o.config[file], nil
	}
	if c, ok := o.config[file]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("no config %s", file)
}

func (o *witnessOps) WriteConfig(file string, old, new []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if string(o.config[file]) != string(old) {
		return sumdb.ErrWriteConflict
	}
	o.config[file] = new
	return nil
}
func (o *witnessOps) ReadCache(file string) ([]byte, error) { return nil, errors.New("no cache") }
func (o *witnessOps) WriteCache(file string, data []byte)   {}
func (o *witnessOps) Log(msg string)                        {}
func (o *witnessOps) SecurityError(msg string) {
	o.mu.Lock()
	o.errs = append(o.errs, msg)
	o.mu.Unlock()
}

// TestGoClientThroughWitness checks that a sumdb.Client, pinned to either
// key, verifies everything the witness serves.
func TestGoClientThroughWitness(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, key string }{
		{"enterprise key", f.ekey},
		{"upstream key", f.upstreamKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := &witnessOps{w: f.w, config: map[string][]byte{"key": []byte(tc.key)}}
			c := sumdb.NewClient(ops)
			for _, m := range mods(300) { // more than one tile
				lines, err := c.Lookup(m.Path, m.Version)
				if err != nil {
					t.Fatalf("lookup %v: %v", m, err)
				}
				if len(lines) != 1 {
					t.Fatalf("lookup %v: lines %q", m, lines)
				}
			}
			if len(ops.errs) > 0 {
				t.Fatalf("security errors: %v", ops.errs)
			}
		})
	}
}

func TestLookupCoSignsAndStores(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := module.Version{Path: "example.com/Upper", Version: "v1.0.0"}
	body, err := f.w.Lookup(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	_, text, msg, err := tlog.ParseRecord(body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), "example.com/Upper v1.0.0 h1:") {
		t.Errorf("record text %q", text)
	}
	for _, key := range []string{f.ekey, f.upstreamKey} {
		v, _ := note.NewVerifier(key)
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("note does not verify with %s: %v", key, err)
		}
	}
	if got := f.store.Keys("sumdb/sum.golang.org/lookup/"); len(got) != 1 || got[0] != "sumdb/sum.golang.org/lookup/example.com/!upper@v1.0.0" {
		t.Errorf("stored lookups %q", got)
	}
	before := f.db.readCount("/lookup/")
	w2 := f.reopen(t) // a restart serves from the store
	if _, err := w2.Lookup(ctx, m); err != nil {
		t.Fatal(err)
	}
	if f.db.readCount("/lookup/") != before {
		t.Errorf("stored lookup read the upstream again")
	}
}

func TestWitnessRefusesBadData(t *testing.T) {
	other, _, _ := note.GenerateKey(rand.Reader, "sum.golang.org")
	otherSigner, _ := note.NewSigner(other)
	resign := func(body []byte, s note.Signer) []byte {
		i := strings.Index(string(body), "go.sum database tree")
		n, err := note.Open(body[i:], note.VerifierList())
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			n = unverified.Note
		}
		signed, _ := note.Sign(&note.Note{Text: n.Text}, s)
		return append(body[:i:i], signed...)
	}
	tests := []struct {
		name      string
		mutate    func(path string, body []byte) []byte
		want      error
		stateKept bool
	}{
		{"unknown signer", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "/lookup/") {
				return resign(b, otherSigner)
			}
			return b
		}, ErrVerify, true},
		{"bad signature", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "/lookup/") {
				i := strings.LastIndex(string(b), " ")
				b[i+8] ^= 1
			}
			return b
		}, ErrVerify, true},
		{"wrong id", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "/lookup/") && b[0] == '3' {
				b[0] = '2'
			}
			return b
		}, ErrVerify, false},
		{"altered tile", func(p string, b []byte) []byte {
			if strings.HasPrefix(p, "/tile/") {
				b[5] ^= 1
			}
			return b
		}, ErrVerify, false},
		{"record for another module", func(p string, b []byte) []byte {
			return []byte(strings.Replace(string(b), "example.com/m3 ", "example.com/mX ", -1))
		}, ErrVerify, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			for _, m := range mods(3) {
				if _, err := f.w.Lookup(ctx, m); err != nil {
					t.Fatal(err)
				}
			}
			stateBefore, _ := f.store.Load(ctx, "witness/sum.golang.org/latest")
			f.db.setMutate(tc.mutate)
			_, err := f.w.Lookup(ctx, mods(4)[3])
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if got := f.store.Keys("sumdb/sum.golang.org/lookup/example.com/m3"); len(got) > 0 {
				t.Errorf("refused record stored: %q", got)
			}
			state, _ := f.store.Load(ctx, "witness/sum.golang.org/latest")
			if tc.stateKept && string(state) != string(stateBefore) {
				t.Errorf("witness state moved to an unverified tree head")
			}
		})
	}
}

func TestForkIsEvidenceAndFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(5) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.db.fork(t, mods(7)...)
	_, _, err := f.w.Latest(ctx)
	if !errors.Is(err, ErrFork) {
		t.Fatalf("Latest after fork: %v, want ErrFork", err)
	}
	ev, err := f.w.Evidence(ctx)
	if err != nil || len(ev) != 1 {
		t.Fatalf("evidence %v, %v", ev, err)
	}
	if ev[0].OlderSize != 5 || ev[0].NewerSize != 7 || ev[0].OlderNote == "" || ev[0].NewerNote == "" {
		t.Errorf("evidence %+v", ev[0])
	}
	tree, _ := f.w.State()
	if tree.N != 5 {
		t.Errorf("witness state moved to %d on a fork", tree.N)
	}
	w2 := f.reopen(t) // fail closed across restarts
	for name, call := range map[string]func() error{
		"lookup":  func() error { _, err := w2.Lookup(ctx, mods(1)[0]); return err },
		"current": func() error { _, _, err := w2.Current(ctx); return err },
		"tile":    func() error { _, err := w2.Tile(ctx, tlog.Tile{H: 8, L: 0, N: 0, W: 5}); return err },
	} {
		if err := call(); !errors.Is(err, ErrFork) {
			t.Errorf("%s after fork: %v, want ErrFork", name, err)
		}
	}
}

func TestOlderHeadAcceptedStateOnlyMovesForward(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old, _, err := f.w.Latest(ctx) // empty tree
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods(3) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	msg, _ := f.db.ReadRemote(ctx, "/latest")
	for _, m := range mods(6)[3:] {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, tree, err := f.w.CoSign(ctx, msg); err != nil || tree.N != 3 {
		t.Fatalf("older head: tree %d, %v", tree.N, err)
	}
	if tree, _ := f.w.State(); tree.N != 6 {
		t.Errorf("state = %d, want 6", tree.N)
	}
	_ = old
}

func TestTileAuthenticated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(10) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		tile tlog.Tile
		want error
	}{
		{"partial in tree", tlog.Tile{H: 8, L: 0, N: 0, W: 7}, nil},
		{"edge of tree", tlog.Tile{H: 8, L: 0, N: 0, W: 10}, nil},
		{"beyond tree", tlog.Tile{H: 8, L: 0, N: 0, W: 11}, ErrNotFound},
		{"data tile", tlog.Tile{H: 8, L: -1, N: 0, W: 10}, ErrNotFound},
		{"other height", tlog.Tile{H: 4, L: 0, N: 0, W: 10}, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := f.w.Tile(ctx, tc.tile)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			want, _ := f.db.ReadRemote(ctx, "/"+tc.tile.Path())
			if string(data) != string(want) {
				t.Errorf("tile differs from upstream")
			}
		})
	}
}
