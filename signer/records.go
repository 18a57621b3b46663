package signer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// remoteError marks an error of the Remote, so that tile-reading failures
// caused by the upstream are not reported as verification failures.
type remoteError struct{ err error }

func (e *remoteError) Error() string { return e.err.Error() }
func (e *remoteError) Unwrap() error { return e.err }

// errNotStored reports a tile a storedOnly reader does not have.
var errNotStored = errors.New("not stored")

func (w *Witness) lookupKey(target string) string { return "sumdb/" + w.name + "/lookup/" + target }
func (w *Witness) tileKey(t tlog.Tile) string     { return "sumdb/" + w.name + "/" + t.Path() }

// proven is a record proven to be in a witnessed tree.
type proven struct {
	rec  []byte     // the record as the protocol serves it: id, then text
	text []byte     // its go.sum lines
	note *note.Note // the upstream-signed tree that contains it; nil: the newest witnessed tree does
}

// Lookup returns the checksum database's answer for m: the record of its
// go.sum lines and a co-signed tree note whose tree contains that record.
// It is the wire answer built on the proof Lines uses.
func (w *Witness) Lookup(ctx context.Context, m module.Version) ([]byte, error) {
	p, err := w.prove(ctx, m)
	if err != nil {
		return nil, err
	}
	var signed []byte
	if p.note == nil {
		signed, _, err = w.Current(ctx)
	} else {
		signed, err = w.sign(ctx, p.note)
	}
	if err != nil {
		return nil, err
	}
	return append(p.rec, signed...), nil
}

// Lines returns the go.sum lines of m proven to be in a witnessed tree,
// as sumdb.Client.Lookup does: those that start with m.Path, m.Version
// and a space, so a version ending in "/go.mod" gives the go.mod line
// only. It signs nothing.
func (w *Witness) Lines(ctx context.Context, m module.Version) ([]string, error) {
	p, err := w.prove(ctx, m)
	if err != nil {
		return nil, err
	}
	prefix := m.Path + " " + m.Version + " "
	var lines []string
	for _, line := range strings.Split(string(p.text), "\n") {
		if strings.HasPrefix(line, prefix) {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// prove returns the record of m. A record read from the upstream is
// returned only after its tree head is witnessed and its inclusion is
// proved; verified records are stored, and later proven by the newest
// witnessed tree head.
func (w *Witness) prove(ctx context.Context, m module.Version) (proven, error) {
	if w.Forked() {
		return proven{}, ErrFork
	}
	target, err := lookupTarget(m)
	if err != nil {
		return proven{}, err
	}
	rec, err := w.store.Load(ctx, w.lookupKey(target))
	if err != nil {
		return proven{}, fmt.Errorf("reading stored record: %w", err)
	}
	if rec == nil {
		return w.lookupRemote(ctx, m, target)
	}
	id, text, _, err := tlog.ParseRecord(rec)
	if err == nil && id >= w.TreeSize() {
		w.catchUp(ctx) // another gate may have witnessed the tree that holds it
	}
	if err != nil || id >= w.TreeSize() {
		return proven{}, fmt.Errorf("%w: stored record for %s is not in the witnessed tree", ErrVerify, target)
	}
	return proven{rec: rec, text: text}, nil
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
func (w *Witness) lookupRemote(ctx context.Context, m module.Version, target string) (proven, error) {
	epoch := w.epoch.Load()
	data, err := w.remote.ReadRemote(ctx, "/lookup/"+target)
	if err != nil {
		return proven{}, fmt.Errorf("looking up %s in %s: %w", target, w.name, err)
	}
	id, text, treeMsg, err := tlog.ParseRecord(data)
	if err != nil {
		return proven{}, fmt.Errorf("%w: lookup of %s: %v", ErrVerify, target, err)
	}
	if !recordNames(text, m) {
		return proven{}, fmt.Errorf("%w: lookup of %s answered a record for another module", ErrVerify, target)
	}
	n, tree, err := w.Observe(ctx, treeMsg)
	if err != nil {
		return proven{}, err
	}
	if err := w.checkRecord(ctx, tree, id, text); err != nil {
		return proven{}, err
	}
	rec, err := tlog.FormatRecord(id, text)
	if err != nil {
		return proven{}, fmt.Errorf("%w: %v", ErrVerify, err)
	}
	if w.epoch.Load() == epoch { // not reset meanwhile: the tree is still on the witnessed timeline
		if err := w.store.Store(ctx, w.lookupKey(target), rec); err != nil {
			return proven{}, fmt.Errorf("storing verified record: %w", err)
		}
	}
	return proven{rec: rec, text: text, note: n}, nil
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
	hashes, err := tlog.TileHashReader(tree, w.tiles(ctx, accepted)).ReadHashes([]int64{tlog.StoredHashIndex(0, id)})
	if err != nil {
		return w.tileError(fmt.Sprintf("proving record %d", id), err)
	}
	if hashes[0] != tlog.RecordHash(text) {
		return fmt.Errorf("%w: record %d does not match tree #%d", ErrVerify, id, tree.N)
	}
	return nil
}

// Tile returns a hash tile of the newest witnessed tree, authenticated
// against it. Whether the tile lies inside that tree is decided first,
// with nothing read: a tile outside it (a level the tree does not reach,
// past its end, wider than the tree has there) is ErrNotFound at once.
// Data tiles are not served: the go command never asks for them.
func (w *Witness) Tile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	if w.Forked() {
		return nil, ErrFork
	}
	tree, _ := w.State()
	if !inTree(tree.N, t) {
		w.catchUp(ctx) // another gate may have witnessed a tree that holds it
		tree, _ = w.State()
	}
	if !inTree(tree.N, t) {
		return nil, fmt.Errorf("%w: tile %s is not inside the witnessed tree #%d", ErrNotFound, t.Path(), tree.N)
	}
	if data, err := w.storedTile(ctx, t); err != nil || data != nil {
		return data, err
	}
	r := w.tiles(ctx, accepted)
	data, err := tlog.ReadTileData(t, tlog.TileHashReader(tree, r))
	if err != nil {
		return nil, w.tileError("authenticating tile "+t.Path(), err)
	}
	w.saveTile(ctx, r.epoch, t, data)
	return data, nil
}

// sign adds the enterprise signature to a verified note, and remembers
// the newest tree head it has co-signed.
func (w *Witness) sign(ctx context.Context, n *note.Note) ([]byte, error) {
	signed, err := note.Sign(n, w.signer)
	if err != nil {
		return nil, fmt.Errorf("co-signing tree note: %w", err)
	}
	w.noteCoSigned(ctx, n, signed)
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
