package signer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ImportRecord is a checksum-database record carried by an air-gap bundle.
type ImportRecord struct {
	Module module.Version
	ID     int64
	Text   []byte // its go.sum lines
}

// Import is what an air-gap bundle brings to the witness.
type Import struct {
	// Note is the tree note the records are proven in; it must carry the
	// upstream's signature (other signatures are ignored).
	Note []byte
	// Tiles reads the bundle's "/tile/..." files, as the upstream would.
	Tiles   Remote
	Records []ImportRecord
	// Seen are the exporting witness's history entries for the records
	// (its first entry, then the entry that dates each record), in any
	// order; At dates the tree head itself: when the bundle was made. They
	// are recorded only when the head is newer than the witnessed one, and
	// never later than now.
	Seen []HistoryEntry
	At   time.Time
}

// Import witnesses a tree head carried across an air gap, as Observe does
// for the upstream's, with the tiles read from the bundle: it first proves
// every record's inclusion in the bundle's tree (nothing is stored when
// one fails); then the tree must extend the witnessed one or be extended
// by it, and a tree that is neither is recorded as a fork with its
// evidence, as online; then the records and the tiles that proved them are
// stored, and the history dates the new records by the bundle's times.
// A bundle's tree that is not newer changes nothing but the records and
// tiles it adds. It returns the bundle's tree.
func (w *Witness) Import(ctx context.Context, in Import) (tlog.Tree, error) {
	if w.Forked() {
		return tlog.Tree{}, ErrFork
	}
	n, tree, err := w.open(in.Note)
	if err != nil {
		return tlog.Tree{}, err
	}
	// The witness keeps the upstream's signature only: the exporting
	// gate's co-signature is not its own, and it adds its own when it serves.
	in.Note = upstreamOnly(n)
	r := w.tilesFrom(ctx, candidate, in.Tiles)
	if err := w.proveImported(tree, r, in.Records); err != nil {
		return tlog.Tree{}, err
	}
	if _, _, err := w.observe(ctx, in.Note, in.Tiles, w.importSeen(tree, in)); err != nil {
		return tlog.Tree{}, err
	}
	if w.epoch.Load() != r.epoch {
		return tlog.Tree{}, errors.New("the witness was reset during the import: import the bundle again")
	}
	for _, at := range r.authenticated() {
		w.saveTile(ctx, r.epoch, at.tile, at.data)
	}
	for _, rec := range in.Records {
		target, _ := lookupTarget(rec.Module)
		b, err := tlog.FormatRecord(rec.ID, rec.Text)
		if err != nil {
			return tlog.Tree{}, fmt.Errorf("%w: record of %s: %v", ErrVerify, target, err)
		}
		if err := w.store.Store(ctx, w.lookupKey(target), b); err != nil {
			return tlog.Tree{}, fmt.Errorf("storing verified record: %w", err)
		}
	}
	return tree, nil
}

// upstreamOnly returns a verified note with its verified signatures only.
func upstreamOnly(n *note.Note) []byte {
	var b strings.Builder
	b.WriteString(n.Text + "\n")
	for _, sig := range n.Sigs {
		b.WriteString("— " + sig.Name + " " + sig.Base64 + "\n")
	}
	return []byte(b.String())
}

// proveImported checks that every record names its module and is in tree.
func (w *Witness) proveImported(tree tlog.Tree, r *tileReader, recs []ImportRecord) error {
	idx := make([]int64, len(recs))
	for i, rec := range recs {
		if _, err := lookupTarget(rec.Module); err != nil {
			return fmt.Errorf("%w: %v", ErrVerify, err)
		}
		if !recordNames(rec.Text, rec.Module) {
			return fmt.Errorf("%w: the record of %s names another module", ErrVerify, rec.Module)
		}
		if rec.ID < 0 || rec.ID >= tree.N {
			return fmt.Errorf("%w: record %d of %s is not in tree #%d", ErrVerify, rec.ID, rec.Module, tree.N)
		}
		idx[i] = tlog.StoredHashIndex(0, rec.ID)
	}
	if len(idx) == 0 {
		return nil
	}
	hashes, err := tlog.TileHashReader(tree, r).ReadHashes(idx)
	if err != nil {
		return w.tileError(fmt.Sprintf("proving the imported records in tree #%d", tree.N), err)
	}
	for i, rec := range recs {
		if hashes[i] != tlog.RecordHash(rec.Text) {
			return fmt.Errorf("%w: record %d of %s does not match tree #%d", ErrVerify, rec.ID, rec.Module, tree.N)
		}
	}
	return nil
}

// importSeen returns the history entries to record if tree is accepted as
// newer: the bundle's entries inside the tree, in size order, then the
// tree at the bundle's time, none later than now.
func (w *Witness) importSeen(tree tlog.Tree, in Import) []HistoryEntry {
	now := w.now()
	clamp := func(t time.Time) time.Time {
		if t.IsZero() || t.After(now) {
			return now
		}
		return t
	}
	var seen []HistoryEntry
	for _, e := range in.Seen {
		if e.Size > 0 && e.Size < tree.N && !e.Time.IsZero() {
			seen = append(seen, HistoryEntry{Size: e.Size, Time: clamp(e.Time)})
		}
	}
	slices.SortFunc(seen, func(a, b HistoryEntry) int { return cmpInt(a.Size, b.Size) })
	return append(seen, HistoryEntry{Size: tree.N, Time: clamp(in.At)})
}
