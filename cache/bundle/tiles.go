package bundle

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the tile height of the checksum database protocol.
const TileHeight = 8

// SumDBFiles reads the checksum-database files of an extracted bundle:
// it is a tlog.TileReader, and its ReadRemote serves "/lookup/..." and
// "/tile/..." paths as the upstream would, so that a witness can read a
// bundle as it reads the upstream. A tile that is not in the bundle is an
// error wrapping fs.ErrNotExist.
type SumDBFiles struct {
	Ex *Extracted
	DB string // the database name
}

// ReadRemote returns the file at path below sumdb/<db>.
func (s SumDBFiles) ReadRemote(_ context.Context, path string) ([]byte, error) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok || checkName(rest) != nil || !(strings.HasPrefix(rest, "tile/") || strings.HasPrefix(rest, "lookup/")) {
		return nil, fmt.Errorf("%s: %w", path, fs.ErrNotExist)
	}
	name := "sumdb/" + s.DB + "/" + rest
	if _, ok := s.Ex.Files[name]; !ok {
		return nil, fmt.Errorf("the bundle has no %s: %w", name, fs.ErrNotExist)
	}
	return os.ReadFile(s.Ex.Path(name))
}

// Height implements tlog.TileReader.
func (s SumDBFiles) Height() int { return TileHeight }

// ReadTiles implements tlog.TileReader: a tile, or the prefix of its full
// tile, from the bundle.
func (s SumDBFiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := s.ReadRemote(context.Background(), "/"+t.Path())
		if errors.Is(err, fs.ErrNotExist) && t.W < 1<<TileHeight {
			full := t
			full.W = 1 << TileHeight
			if fdata, ferr := s.ReadRemote(context.Background(),
				"/"+full.Path()); ferr == nil && len(fdata) >= t.W*tlog.HashSize {
				data, err = fdata[:t.W*tlog.HashSize], nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), err)
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%w: tile %s has %d bytes, want %d", ErrProof, t.Path(), len(data),
				t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

// SaveTiles implements tlog.TileReader; it keeps nothing.
func (s SumDBFiles) SaveTiles([]tlog.Tile, [][]byte) {}

// RecordingTiles is a tlog.TileReader that reads tiles with Read and
// remembers every tile read, so that a writer knows which tiles a proof
// needs: exactly those tlog reads for it.
type RecordingTiles struct {
	Read  func(t tlog.Tile) ([]byte, error)
	Tiles map[tlog.Tile]bool
}

// Height implements tlog.TileReader.
func (r *RecordingTiles) Height() int { return TileHeight }

// ReadTiles implements tlog.TileReader.
func (r *RecordingTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.Read(t)
		if err != nil {
			return nil, fmt.Errorf("tile %s: %w", t.Path(), err)
		}
		if r.Tiles == nil {
			r.Tiles = map[tlog.Tile]bool{}
		}
		r.Tiles[t] = true
		out[i] = data
	}
	return out, nil
}

// SaveTiles implements tlog.TileReader.
func (r *RecordingTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// ProofTiles returns the tiles that prove records ids in tree, and, when
// since is between 0 and tree.N, that tree extends the tree of since
// records: the tiles a bundle carries. read returns a tile
// authenticated or not: tlog authenticates it against tree.
func ProofTiles(tree tlog.Tree, ids []int64, since int64, read func(t tlog.Tile) ([]byte, error)) ([]tlog.Tile,
	tlog.Hash, error) {
	rec := &RecordingTiles{Read: read}
	thr := tlog.TileHashReader(tree, rec)
	idx := make([]int64, len(ids))
	for i, id := range ids {
		idx[i] = tlog.StoredHashIndex(0, id)
	}
	if len(idx) > 0 {
		if _, err := thr.ReadHashes(idx); err != nil {
			return nil, tlog.Hash{}, fmt.Errorf("proving the records in tree #%d: %w", tree.N, err)
		}
	}
	var sinceHash tlog.Hash
	if since > 0 && since < tree.N {
		h, err := tlog.TreeHash(since, thr)
		if err != nil {
			return nil, tlog.Hash{}, fmt.Errorf("proving tree #%d in tree #%d: %w", since, tree.N, err)
		}
		sinceHash = h
	}
	// The go command reads the tiles of the tree's right edge to check a
	// later tree against this one; a proof of any record reads them too.
	out := make([]tlog.Tile, 0, len(rec.Tiles))
	for t := range rec.Tiles {
		out = append(out, t)
	}
	return out, sinceHash, nil
}
