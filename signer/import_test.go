package signer

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

// offlineRemote is the upstream of an air-gapped witness: never reachable.
type offlineRemote struct{}

func (offlineRemote) ReadRemote(context.Context, string) ([]byte, error) {
	return nil, errors.New("offline")
}

// bundleOf returns what a bundle of ms from db would carry: the latest
// note and the records.
func bundleOf(t *testing.T, f *fixture, ms []module.Version) ([]byte, []ImportRecord) {
	t.Helper()
	ctx := context.Background()
	var recs []ImportRecord
	for _, m := range ms {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := f.db.ReadRemote(ctx, "/latest")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		data, err := f.db.ReadRemote(ctx, "/lookup/"+m.Path+"@"+m.Version)
		if err != nil {
			t.Fatal(err)
		}
		id, text, _, err := tlog.ParseRecord(data)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, ImportRecord{Module: m, ID: id, Text: text})
	}
	return msg, recs
}

// TestImport imports a bundle's tree and records into an offline witness:
// they are then proven without the upstream, and the history dates them
// by the bundle's times; a forged record stores nothing, and a forked
// tree is recorded as a fork.
func TestImport(t *testing.T) {
	ctx := context.Background()
	out := newFixture(t)
	ms := mods(5)
	msg, recs := bundleOf(t, out, ms)
	newInside := func() *Witness {
		w, err := New(ctx, Config{Upstream: out.upstreamKey, Signer: out.signer, Store: &MemStore{}, Remote: offlineRemote{}})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	t0, t1, at := time.Unix(1_700_000_000, 0), time.Unix(1_700_000_600, 0), time.Unix(1_700_001_200, 0)

	t.Run("a forged record stores nothing", func(t *testing.T) {
		in := newInside()
		bad := append([]ImportRecord(nil), recs...)
		bad[1].Text = []byte(ms[1].Path + " v1.0.0 h1:AAAA\n" + ms[1].Path + " v1.0.0/go.mod h1:BBBB\n")
		_, err := in.Import(ctx, Import{Note: msg, Tiles: out.db, Records: bad, At: at})
		if !errors.Is(err, ErrVerify) || in.TreeSize() != 0 {
			t.Fatalf("err = %v, tree #%d; want ErrVerify and nothing witnessed", err, in.TreeSize())
		}
	})
	in := newInside()
	seen := []HistoryEntry{{Size: recs[2].ID + 1, Time: t1}, {Size: 1, Time: t0}}
	tree, err := in.Import(ctx, Import{Note: msg, Tiles: out.db, Records: recs, Seen: seen, At: at})
	if err != nil {
		t.Fatal(err)
	}
	if in.TreeSize() != tree.N || tree.N < 5 {
		t.Fatalf("witnessed tree #%d, imported #%d", in.TreeSize(), tree.N)
	}
	for _, m := range ms {
		if lines, err := in.Lines(ctx, m); err != nil || len(lines) != 1 {
			t.Errorf("Lines(%v) = %v, %v", m, lines, err)
		}
	}
	if _, err := in.Tile(ctx, tlog.TileForIndex(TileHeight, tlog.StoredHashIndex(0, recs[0].ID))); err != nil {
		t.Errorf("a tile of the imported tree: %v", err)
	}
	for _, tc := range []struct {
		id   int64
		want time.Time
		ok   bool
	}{{0, time.Time{}, false}, {recs[2].ID, t1, true}, {tree.N - 1, at, true}} {
		if got, _, ok := in.FirstSeen(tc.id); ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("FirstSeen(%d) = %v %v, want %v %v", tc.id, got, ok, tc.want, tc.ok)
		}
	}
	if _, err := in.Import(ctx, Import{Note: msg, Tiles: out.db, Records: recs, At: at}); err != nil {
		t.Errorf("the same bundle again: %v", err)
	}

	out.db.fork(t, ms...)
	forked, err := out.db.ReadRemote(ctx, "/latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Import(ctx, Import{Note: forked, Tiles: out.db, At: at}); !errors.Is(err, ErrFork) || !in.Forked() {
		t.Errorf("a forked tree: err = %v, forked %v", err, in.Forked())
	}
}
