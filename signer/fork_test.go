package signer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// storedData returns the stored tiles and records, by key.
func storedData(t *testing.T, s *MemStore) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, k := range s.Keys("sumdb/") {
		v, _ := s.Load(context.Background(), k)
		out[k] = string(v)
	}
	return out
}

// TestForkInsideStoredFullTile witnesses 300 records (so the full tile
// 000 is stored), then the upstream signs a 310-record tree whose record 0
// differs: the fork is proven with the upstream's own tiles, its evidence
// kept with a proof that checks, and the witness fails closed. Nothing of
// the forked tree is stored.
func TestForkInsideStoredFullTile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(300) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.w.Tile(ctx, tlog.Tile{H: 8, L: 0, N: 0, W: 256}); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.store.Load(ctx, "sumdb/sum.golang.org/tile/8/0/000"); v == nil {
		t.Fatal("full tile 000 not stored")
	}
	before := storedData(t, f.store)
	f.db.fork(t, mods(310)...)

	_, _, err := f.w.Latest(ctx)
	if !errors.Is(err, ErrFork) {
		t.Fatalf("Latest after a fork inside a stored full tile: %v, want ErrFork", err)
	}
	if !f.w.Forked() {
		t.Error("Forked() is false")
	}
	ev, err := f.w.Evidence(ctx)
	if err != nil || len(ev) != 1 {
		t.Fatalf("evidence %v, %v", ev, err)
	}
	e := ev[0]
	if e.OlderSize != 300 || e.NewerSize != 310 || len(e.Proof) == 0 || e.ComputedAt == e.OlderHash {
		t.Errorf("evidence %+v", e)
	}
	if !strings.Contains(e.NewerNote, "\n310\n") || !strings.Contains(e.OlderNote, "\n300\n") {
		t.Errorf("evidence notes %q, %q", e.OlderNote, e.NewerNote)
	}
	if err := e.CheckProof(); err != nil {
		t.Errorf("evidence proof: %v", err)
	}
	tampered := e
	tampered.Proof = append([]string{e.ComputedAt}, e.Proof[1:]...)
	if err := tampered.CheckProof(); err == nil {
		t.Error("a tampered proof checks")
	}
	if _, err := f.w.Lookup(ctx, mods(1)[0]); !errors.Is(err, ErrFork) {
		t.Errorf("lookup of a record verified before: %v, want ErrFork", err)
	}
	if after := storedData(t, f.store); !mapsEqual(before, after) {
		t.Errorf("the forked tree changed what is stored: %d keys before, %d after", len(before), len(after))
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestCandidateTilesMustAuthenticateTheirRoot serves a newer tree head
// whose tiles do not hash to its signed root: that is ErrVerify, not a
// fork, and nothing is stored.
func TestCandidateTilesMustAuthenticateTheirRoot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(300) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	before := storedData(t, f.store)
	state, _ := f.store.Load(ctx, "witness/sum.golang.org/latest")
	f.db.fork(t, mods(310)...)
	f.db.setMutate(func(p string, b []byte) []byte {
		if strings.HasPrefix(p, "/tile/") {
			b = bytes.Clone(b)
			b[len(b)-1] ^= 1
		}
		return b
	})
	_, _, err := f.w.Latest(ctx)
	if !errors.Is(err, ErrVerify) || errors.Is(err, ErrFork) {
		t.Fatalf("Latest with tiles that do not authenticate the root: %v, want ErrVerify", err)
	}
	if f.w.Forked() {
		t.Error("recorded as a fork without proof")
	}
	if after := storedData(t, f.store); !mapsEqual(before, after) {
		t.Error("stored data changed")
	}
	if now, _ := f.store.Load(ctx, "witness/sum.golang.org/latest"); !bytes.Equal(now, state) {
		t.Error("witness state moved")
	}
	if keys := f.store.Keys("witness/sum.golang.org/evidence/"); len(keys) != 0 {
		t.Errorf("evidence stored: %q", keys)
	}
}

// TestSameSizeOtherRoot is a fork of one tree size: its evidence is the
// two notes.
func TestSameSizeOtherRoot(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(5) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.db.fork(t, mods(5)...)
	if _, _, err := f.w.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("Latest: %v, want ErrFork", err)
	}
	ev, _ := f.w.Evidence(ctx)
	if len(ev) != 1 || ev[0].OlderSize != 5 || ev[0].NewerSize != 5 || ev[0].CheckProof() != nil {
		t.Fatalf("evidence %+v", ev)
	}
}

// TestClearForkRemovesWhatWasNeverAccepted plants what an older modgate
// stored from a forked tree (tiles inside and past the witnessed tree, a
// record past it): clear-fork removes them and keeps what the witnessed
// tree authenticates; the honest tiles are served again.
func TestClearForkRemovesWhatWasNeverAccepted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(300) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	full := tlog.Tile{H: 8, L: 0, N: 0, W: 256}
	honest, err := f.w.Tile(ctx, full)
	if err != nil {
		t.Fatal(err)
	}
	edge := tlog.Tile{H: 8, L: 0, N: 1, W: 44}
	if _, err := f.w.Tile(ctx, edge); err != nil {
		t.Fatal(err)
	}
	kept := storedData(t, f.store)
	f.db.fork(t, mods(600)...)
	if _, _, err := f.w.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("Latest: %v, want ErrFork", err)
	}
	forked, _ := f.db.ReadRemote(ctx, "/tile/8/0/000")
	past, _ := f.db.ReadRemote(ctx, "/tile/8/0/001")
	plant := map[string][]byte{
		"sumdb/sum.golang.org/tile/8/0/000":                      forked, // overwrites the honest one
		"sumdb/sum.golang.org/tile/8/0/001":                      past,
		"sumdb/sum.golang.org/tile/8/1/000.p/2":                  past[:2*tlog.HashSize],
		"sumdb/sum.golang.org/lookup/example.com/m500@v1.0.0":    []byte("500\nexample.com/m500 v1.0.0 h1:x\n"),
		"sumdb/sum.golang.org/tile/8/9/000":                      past,
		"sumdb/sum.golang.org/tile/not-a-tile":                   past,
		"sumdb/sum.golang.org/lookup/example.com/garbage@v1.0.0": []byte("garbage"),
	}
	for k, v := range plant {
		if err := f.store.Store(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	f.db.unfork() // the upstream is honest again
	if _, err := f.w.ClearFork(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	got := storedData(t, f.store)
	for k := range plant {
		if _, ok := got[k]; ok {
			t.Errorf("%s survives clear-fork", k)
		}
	}
	for k, v := range kept {
		if strings.HasPrefix(k, "sumdb/sum.golang.org/tile/8/0/000") {
			continue // tile 000 is overwritten by the plant: its prefixes no longer authenticate from the store
		}
		if got[k] != v {
			t.Errorf("%s removed by clear-fork", k)
		}
	}
	data, err := f.w.Tile(ctx, full)
	if err != nil || !bytes.Equal(data, honest) {
		t.Errorf("tile 000 after clear-fork: %v; honest: %v", err, bytes.Equal(data, honest))
	}
}

// countingSigner counts the signatures it makes.
type countingSigner struct {
	note.Signer
	n atomic.Int32
}

func (s *countingSigner) Sign(msg []byte) ([]byte, error) {
	s.n.Add(1)
	return s.Signer.Sign(msg)
}

// TestLinesProvesAndSignsNothing checks that Lines returns the proven
// go.sum lines as sumdb.Client.Lookup does, and signs nothing; the wire
// answer is built on the same proof.
func TestLinesProvesAndSignsNothing(t *testing.T) {
	f := newFixture(t)
	cs := &countingSigner{Signer: f.signer}
	f.signer = cs
	f.w = f.reopen(t)
	ctx := context.Background()
	m := module.Version{Path: "example.com/Upper", Version: "v1.0.0"}
	want, err := gosum("")(m.Path, m.Version)
	if err != nil {
		t.Fatal(err)
	}
	wantLines := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
	tests := []struct {
		version string
		want    []string
	}{
		{"v1.0.0", wantLines[:1]},
		{"v1.0.0/go.mod", wantLines[1:]},
		{"v1.0.0", wantLines[:1]}, // stored now
	}
	for _, tc := range tests {
		got, err := f.w.Lines(ctx, module.Version{Path: m.Path, Version: tc.version})
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("Lines(%s): %q, %v; want %q", tc.version, got, err, tc.want)
		}
	}
	if n := cs.n.Load(); n != 0 {
		t.Errorf("Lines made %d signatures", n)
	}
	body, err := f.w.Lookup(ctx, m)
	if err != nil || !bytes.Contains(body, want) || cs.n.Load() == 0 {
		t.Errorf("Lookup: %q, %v, %d signatures", body, err, cs.n.Load())
	}
	if _, err := f.w.Lines(ctx, module.Version{Path: "missing.example/x", Version: "v1.0.0"}); err == nil {
		t.Error("Lines of a module the database lacks: no error")
	}
}
