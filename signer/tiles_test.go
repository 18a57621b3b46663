package signer

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// inTreeReference is the slow, obviously correct inTree: with unbounded
// integers, the tile's last hash (N<<H + W) << (L*H) records in, the tree
// must reach it, and W must be a width a tile has.
func inTreeReference(n int64, t tlog.Tile) bool {
	if t.H != TileHeight || t.L < 0 || t.N < 0 || t.W < 1 || t.W > 1<<TileHeight {
		return false
	}
	end := new(big.Int).Lsh(big.NewInt(t.N), TileHeight)
	end.Add(end, big.NewInt(int64(t.W)))
	end.Lsh(end, uint(t.L)*TileHeight)
	return end.Cmp(big.NewInt(n)) <= 0
}

// FuzzInTree holds inTree to its reference for any tile and tree size.
func FuzzInTree(f *testing.F) {
	f.Add(int64(300), 8, 0, int64(0), 256)
	f.Add(int64(300), 8, 0, int64(1), 44)
	f.Add(int64(10), 8, 8, int64(1000000000000000), 1)
	f.Add(int64(1<<62), 8, 7, int64(0), 64)
	f.Add(int64(1<<63-1), 8, 1, int64(1<<55), 255)
	f.Fuzz(func(t *testing.T, n int64, h, l int, idx int64, w int) {
		tile := tlog.Tile{H: h, L: l, N: idx, W: w}
		if got, want := inTree(n, tile), inTreeReference(n, tile); got != want {
			t.Fatalf("inTree(%d, %+v) = %v, reference says %v", n, tile, got, want)
		}
	})
}

// TestInTree checks the inside/outside decision at its edges.
func TestInTree(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		tile tlog.Tile
		want bool
	}{
		{"full tile in tree", 300, tlog.Tile{H: 8, L: 0, N: 0, W: 256}, true},
		{"partial tile at the edge", 300, tlog.Tile{H: 8, L: 0, N: 1, W: 44}, true},
		{"narrower partial tile", 300, tlog.Tile{H: 8, L: 0, N: 1, W: 10}, true},
		{"wider than the tree has", 300, tlog.Tile{H: 8, L: 0, N: 1, W: 45}, false},
		{"past the tree", 300, tlog.Tile{H: 8, L: 0, N: 2, W: 1}, false},
		{"level 1 of a small tree", 300, tlog.Tile{H: 8, L: 1, N: 0, W: 1}, true},
		{"level 2 of a small tree", 300, tlog.Tile{H: 8, L: 2, N: 0, W: 1}, false},
		{"level 8 (shift of 64 bits)", 300, tlog.Tile{H: 8, L: 8, N: 1000000000000000, W: 1}, false},
		{"level 8 at index 0", 1<<63 - 1, tlog.Tile{H: 8, L: 8, N: 0, W: 1}, false},
		{"level 7 of the largest tree", 1<<63 - 1, tlog.Tile{H: 8, L: 7, N: 0, W: 127}, true},
		{"huge index", 1<<63 - 1, tlog.Tile{H: 8, L: 0, N: 1 << 62, W: 256}, false},
		{"negative index", 300, tlog.Tile{H: 8, L: 0, N: -1, W: 256}, false},
		{"data tile", 300, tlog.Tile{H: 8, L: -1, N: 0, W: 256}, false},
		{"other height", 300, tlog.Tile{H: 4, L: 0, N: 0, W: 16}, false},
		{"empty tree", 0, tlog.Tile{H: 8, L: 0, N: 0, W: 1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := inTree(tc.n, tc.tile); got != tc.want {
				t.Errorf("inTree(%d, %s) = %v, want %v", tc.n, tc.tile.Path(), got, tc.want)
			}
			if ref := inTreeReference(tc.n, tc.tile); ref != tc.want {
				t.Errorf("reference says %v", ref)
			}
		})
	}
}

// TestTileOutsideTreeIsNotFoundAtOnce asks for tiles outside the
// witnessed tree: each is ErrNotFound within a fraction of a second,
// with nothing read from the upstream and nothing stored.
func TestTileOutsideTreeIsNotFoundAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(10) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var tiles []tlog.Tile
	for l := 8; l < 64; l++ {
		tiles = append(tiles, tlog.Tile{H: 8, L: l, N: 0, W: 1}, tlog.Tile{H: 8, L: l, N: 1000000000000000, W: 1})
	}
	tiles = append(tiles,
		tlog.Tile{H: 8, L: 2, N: 0, W: 5},       // a level the tree does not reach
		tlog.Tile{H: 8, L: 0, N: 1, W: 1},       // past the tree
		tlog.Tile{H: 8, L: 0, N: 0, W: 11},      // wider than the tree has
		tlog.Tile{H: 8, L: 0, N: 0, W: 256},     // the full tile of a 10-record tree
		tlog.Tile{H: 8, L: 1, N: 0, W: 1},       // a level-1 hash of a 10-record tree
		tlog.Tile{H: 8, L: 0, N: 1 << 53, W: 3}) // far past the tree
	keys := f.store.Keys("")
	reads := f.db.readCount("/")
	for _, tile := range tiles {
		t.Run(tile.Path(), func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := f.w.Tile(ctx, tile); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
			case <-time.After(time.Second):
				t.Fatal("no answer within a second")
			}
		})
	}
	if got := f.db.readCount("/"); got != reads {
		t.Errorf("%d upstream reads for tiles outside the tree", got-reads)
	}
	if got := f.store.Keys(""); len(got) != len(keys) {
		t.Errorf("stored keys %d, was %d: %q", len(got), len(keys), got)
	}
}

// TestStoredTileOutsideTreeNotServed plants a tile past the witnessed
// tree in the store: it is not served.
func TestStoredTileOutsideTreeNotServed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(10) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	planted := tlog.Tile{H: 8, L: 0, N: 0, W: 20}
	if err := f.store.Store(ctx, f.w.tileKey(planted), make([]byte, 20*tlog.HashSize)); err != nil {
		t.Fatal(err)
	}
	if data, err := f.w.Tile(ctx, planted); !errors.Is(err, ErrNotFound) {
		t.Fatalf("planted tile: %d bytes, %v; want ErrNotFound", len(data), err)
	}
}
