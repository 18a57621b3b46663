package signer

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the tile height of the checksum database protocol.
const TileHeight = 8

// maxLevel is the deepest level a tree of fewer than 2^63 records has a
// hash at: the level width n>>(L*TileHeight) is 0 for every deeper level.
const maxLevel = 62 / TileHeight

// inTree reports whether tile t lies inside the tree of size n: a hash
// tile of height TileHeight, at a level the tree reaches, whose W hashes
// the tree has. A partial tile narrower than the tree's tile at that
// place is inside (it is a prefix of it, and hashes of complete subtrees
// never change); a wider one, one past the tree and one at a level the
// tree does not reach are not. No value of t or n overflows.
func inTree(n int64, t tlog.Tile) bool {
	if t.H != TileHeight || t.L < 0 || t.L > maxLevel || t.N < 0 || t.W < 1 || t.W > 1<<TileHeight || n <= 0 {
		return false
	}
	width := n >> (uint(t.L) * TileHeight) // hashes the tree has at level L
	// The tile holds hashes [N<<H, N<<H+W) of its level: N<<H+W <= width.
	return int64(t.W) <= width && t.N <= (width-int64(t.W))>>TileHeight
}

// storedTile returns t from the store, or the prefix of its stored full
// tile; nil if neither is stored.
func (w *Witness) storedTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	data, err := w.store.Load(ctx, w.tileKey(t))
	if err != nil || data != nil {
		return data, err
	}
	full := t
	full.W = 1 << uint(t.H)
	if full == t {
		return nil, nil
	}
	data, err = w.store.Load(ctx, w.tileKey(full))
	if err != nil || data == nil || len(data) < t.W*tlog.HashSize {
		return nil, err
	}
	return data[:t.W*tlog.HashSize], nil
}

// tileSource says where a tileReader reads tiles and what it does with
// those tlog has authenticated.
type tileSource int

const (
	// accepted reads tiles of a tree the witness has accepted: stored
	// tiles first, else the upstream's; it stores what tlog authenticates.
	accepted tileSource = iota
	// candidate reads the upstream's own tiles for a tree not yet
	// accepted, never stored ones; it keeps what tlog authenticates for
	// storing once the tree is accepted (see Witness.accept).
	candidate
	// storedOnly reads stored tiles only, and stores nothing: it checks
	// what the store holds against a tree.
	storedOnly
)

// authTile is a tile that tlog authenticated against a candidate tree.
type authTile struct {
	tile tlog.Tile
	data []byte
}

// tiles returns a tlog.TileReader for one operation.
func (w *Witness) tiles(ctx context.Context, src tileSource) *tileReader {
	return w.tilesFrom(ctx, src, w.remote)
}

// tilesFrom returns a tlog.TileReader that reads what it does not take
// from the store from remote (the upstream, or an imported bundle).
func (w *Witness) tilesFrom(ctx context.Context, src tileSource, remote Remote) *tileReader {
	return &tileReader{ctx: ctx, w: w, src: src, remote: remote, epoch: w.epoch.Load()}
}

// tileReader is a tlog.TileReader over the store and the upstream.
type tileReader struct {
	ctx    context.Context
	w      *Witness
	src    tileSource
	remote Remote // where tiles that are not stored are read
	epoch  uint64 // of the witness when the reader was made (see Witness.epoch)

	mu      sync.Mutex
	stored  map[tlog.Tile]bool // read from the store: no need to save again
	pending []authTile         // authenticated tiles of a candidate tree
}

// Height implements tlog.TileReader.
func (r *tileReader) Height() int { return TileHeight }

// ReadTiles implements tlog.TileReader.
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	data := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	var wg sync.WaitGroup
	for i, t := range tiles {
		wg.Go(func() { data[i], errs[i] = r.readTile(t) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, err
		}
		if len(data[i]) != tiles[i].W*tlog.HashSize {
			return nil, fmt.Errorf("tile %s has %d bytes, want %d", tiles[i].Path(), len(data[i]), tiles[i].W*tlog.HashSize)
		}
	}
	return data, nil
}

func (r *tileReader) readTile(t tlog.Tile) ([]byte, error) {
	if err := r.ctx.Err(); err != nil {
		return nil, &remoteError{err}
	}
	if r.src != candidate {
		data, err := r.w.storedTile(r.ctx, t)
		if err != nil {
			return nil, &remoteError{fmt.Errorf("reading stored tile: %w", err)}
		}
		if data != nil {
			r.mu.Lock()
			if r.stored == nil {
				r.stored = make(map[tlog.Tile]bool)
			}
			r.stored[t] = true
			r.mu.Unlock()
			return data, nil
		}
		if r.src == storedOnly {
			return nil, &remoteError{fmt.Errorf("tile %s: %w", t.Path(), errNotStored)}
		}
	}
	data, err := r.remote.ReadRemote(r.ctx, "/"+t.Path())
	if err == nil {
		return data, nil
	}
	full := t
	full.W = 1 << uint(t.H)
	if full != t { // a completed tile may be served only whole
		if fdata, ferr := r.remote.ReadRemote(r.ctx, "/"+full.Path()); ferr == nil && len(fdata) >= t.W*tlog.HashSize {
			return fdata[:t.W*tlog.HashSize], nil
		}
	}
	return nil, &remoteError{fmt.Errorf("reading %s: %w", t.Path(), err)}
}

// SaveTiles implements tlog.TileReader: tlog calls it with tiles it has
// authenticated against the tree the reader reads for.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range tiles {
		switch {
		case r.src == storedOnly || r.stored[t]:
		case r.src == candidate:
			r.pending = append(r.pending, authTile{t, data[i]})
		default:
			r.w.saveTile(r.ctx, r.epoch, t, data[i])
		}
	}
}

// authenticated returns the tiles a candidate reader has authenticated.
func (r *tileReader) authenticated() []authTile {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending
}

// saveTile stores a tile authenticated against an accepted tree, unless
// an operator has reset the witness since it was read.
func (w *Witness) saveTile(ctx context.Context, epoch uint64, t tlog.Tile, data []byte) {
	if w.epoch.Load() != epoch {
		return
	}
	if err := w.store.Store(ctx, w.tileKey(t), data); err != nil {
		w.log.Warn("cannot store verified tile", zap.String("tile", t.Path()), zap.Error(err))
	}
}
