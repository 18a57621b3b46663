package signer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// TileHeight is the tile height of the checksum database protocol.
const TileHeight = 8

// remoteError marks an error of the Remote, so that tile-reading failures
// caused by the upstream are not reported as verification failures.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

func (w *Witness) lookupKey(target string) string { return "sumdb/" + w.name + "/lookup/" + target }
func (w *Witness) tileKey(t tlog.Tile) string     { return "sumdb/" + w.name + "/" + t.Path() }

// Lookup returns the checksum database's answer for m: the record of its
// go.sum lines and a co-signed tree note whose tree contains that record.
// A record read from the upstream is served only after its tree head is
// witnessed and its inclusion is proved; verified records are stored, and
// later answered with the newest witnessed tree head.
func (w *Witness) Lookup(ctx context.Context, m module.Version) ([]byte, error) {
	if w.Forked() {
		return nil, ErrFork
	}
	target, err := lookupTarget(m)
	if err != nil {
		return nil, err
	}
	if rec, err := w.store.Load(ctx, w.lookupKey(target)); err != nil {
		return nil, fmt.Errorf("reading stored record: %w", err)
	} else if rec != nil {
		signed, tree, err := w.Current(ctx)
		if err != nil {
			return nil, err
		}
		if id, _, _, err := tlog.ParseRecord(rec); err != nil || id >= tree.N {
			return nil, fmt.Errorf("%w: stored record for %s is not in the witnessed tree", ErrVerify, target)
		}
		return append(rec, signed...), nil
	}
	return w.lookupRemote(ctx, m, target)
}

// lookupTarget is the escaped "path@version" of a lookup.
func lookupTarget(m module.Version) (string, error) {
	path, err := module.EscapePath(m.Path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	vers, err := module.EscapeVersion(strings.TrimSuffix(m.Version, "/go.mod"))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return path + "@" + vers, nil
}

// lookupRemote reads, verifies and stores a record from the upstream.
func (w *Witness) lookupRemote(ctx context.Context, m module.Version, target string) ([]byte, error) {
	data, err := w.remote.ReadRemote(ctx, "/lookup/"+target)
	if err != nil {
		return nil, fmt.Errorf("looking up %s in %s: %w", target, w.name, err)
	}
	id, text, treeMsg, err := tlog.ParseRecord(data)
	if err != nil {
		return nil, fmt.Errorf("%w: lookup of %s: %v", ErrVerify, target, err)
	}
	if !recordNames(text, m) {
		return nil, fmt.Errorf("%w: lookup of %s answered a record for another module", ErrVerify, target)
	}
	n, tree, err := w.Observe(ctx, treeMsg)
	if err != nil {
		return nil, err
	}
	if err := w.checkRecord(ctx, tree, id, text); err != nil {
		return nil, err
	}
	rec, err := tlog.FormatRecord(id, text)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	if err := w.store.Store(ctx, w.lookupKey(target), rec); err != nil {
		return nil, fmt.Errorf("storing verified record: %w", err)
	}
	signed, err := w.sign(n)
	if err != nil {
		return nil, err
	}
	return append(rec, signed...), nil
}

// recordNames reports whether every line of a record is about m.
func recordNames(text []byte, m module.Version) bool {
	prefix := m.Path + " " + strings.TrimSuffix(m.Version, "/go.mod")
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	for _, line := range lines {
		if !strings.HasPrefix(line, prefix+" ") && !strings.HasPrefix(line, prefix+"/go.mod ") {
			return false
		}
	}
	return len(lines) > 0
}

// checkRecord proves that record id of tree has the given text.
func (w *Witness) checkRecord(ctx context.Context, tree tlog.Tree, id int64, text []byte) error {
	if id < 0 || id >= tree.N {
		return fmt.Errorf("%w: record %d is not in tree #%d", ErrVerify, id, tree.N)
	}
	hashes, err := tlog.TileHashReader(tree, w.tiles(ctx)).ReadHashes([]int64{tlog.StoredHashIndex(0, id)})
	if err != nil {
		return w.tileError(fmt.Sprintf("proving record %d", id), err)
	}
	if hashes[0] != tlog.RecordHash(text) {
		return fmt.Errorf("%w: record %d does not match tree #%d", ErrVerify, id, tree.N)
	}
	return nil
}

// Tile returns a hash tile authenticated against the newest witnessed tree
// (witnessing the upstream's latest head first if the tile lies beyond it).
// Data tiles are not served: the go command never asks for them.
func (w *Witness) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if w.Forked() {
		return nil, ErrFork
	}
	if t.H != TileHeight || t.L < 0 {
		return nil, fmt.Errorf("%w: tile %s: only hash tiles of height %d are served", ErrNotFound, t.Path(), TileHeight)
	}
	if data, err := w.storedTile(ctx, t); err != nil || data != nil {
		return data, err
	}
	tree, _ := w.State()
	if !covers(tree, t) {
		if _, tree, _ = w.Latest(ctx); !covers(tree, t) {
			return nil, fmt.Errorf("%w: tile %s is beyond the witnessed tree", ErrNotFound, t.Path())
		}
	}
	data, err := tlog.ReadTileData(t, tlog.TileHashReader(tree, w.tiles(ctx)))
	if err != nil {
		return nil, w.tileError("authenticating tile "+t.Path(), err)
	}
	if err := w.store.Store(ctx, w.tileKey(t), data); err != nil {
		return nil, fmt.Errorf("storing verified tile: %w", err)
	}
	return data, nil
}

// covers reports whether every hash of t is in tree.
func covers(tree tlog.Tree, t tlog.Tile) bool {
	end := (t.N<<uint(t.H) + int64(t.W)) << uint(t.L*t.H)
	return end <= tree.N
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
	if err != nil || data == nil {
		return nil, err
	}
	return data[:t.W*tlog.HashSize], nil
}

// sign adds the enterprise signature to a verified note.
func (w *Witness) sign(n *note.Note) ([]byte, error) {
	signed, err := note.Sign(n, w.signer)
	if err != nil {
		return nil, fmt.Errorf("co-signing tree note: %w", err)
	}
	return signed, nil
}

// tileError reports a failure to read authenticated hashes: an upstream
// failure as it is, anything else as a verification failure.
func (w *Witness) tileError(what string, err error) error {
	var re *remoteError
	if errors.As(err, &re) {
		return fmt.Errorf("%s: %w", what, re.err)
	}
	return fmt.Errorf("%w: %s: %v", ErrVerify, what, err)
}

// tiles returns a tlog.TileReader for one operation.
func (w *Witness) tiles(ctx context.Context) tlog.TileReader { return &tileReader{ctx: ctx, w: w} }

// tileReader reads tiles from the store, else from the upstream, and stores
// those that tlog has authenticated.
type tileReader struct {
	ctx    context.Context
	w      *Witness
	mu     sync.Mutex
	stored map[tlog.Tile]bool // read from the store: no need to save again
}

func (r *tileReader) Height() int { return TileHeight }

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
	data, err = r.w.remote.ReadRemote(r.ctx, "/"+t.Path())
	if err == nil {
		return data, nil
	}
	full := t
	full.W = 1 << uint(t.H)
	if full != t { // a completed tile may be served only whole
		if fdata, ferr := r.w.remote.ReadRemote(r.ctx, "/"+full.Path()); ferr == nil && len(fdata) >= t.W*tlog.HashSize {
			return fdata[:t.W*tlog.HashSize], nil
		}
	}
	return nil, &remoteError{fmt.Errorf("reading %s: %w", t.Path(), err)}
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		r.mu.Lock()
		skip := r.stored[t]
		r.mu.Unlock()
		if skip {
			continue
		}
		if err := r.w.store.Store(r.ctx, r.w.tileKey(t), data[i]); err != nil {
			r.w.log.Warn("cannot store verified tile", zap.String("tile", t.Path()), zap.Error(err))
		}
	}
}
