package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/tlog"
)

// Archive is the witness state an operator set aside with Reset to
// accept a new upstream timeline. It is kept as evidence, never deleted.
type Archive struct {
	Time   time.Time `json:"time"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	// Note is the upstream-signed tree head witnessed last ("" if none).
	Note     string        `json:"note,omitempty"`
	CoSigned *CoSignedHead `json:"cosigned,omitempty"`
	// Evidence is the fork evidence that was open.
	Evidence []Evidence `json:"evidence,omitempty"`
	Key      string     `json:"key"` // the key the archive is stored under
}

func archiveKeyPrefix(name string) string { return "witness/" + name + "/archive/" }
func dataPrefix(name string) string       { return "sumdb/" + name + "/" }

// archives returns the archived states of database name, oldest first.
func archives(ctx context.Context, store Store, name string) ([]Archive, error) {
	var out []Archive
	err := store.Scan(ctx, archiveKeyPrefix(name), func(key string, value []byte) error {
		var a Archive
		if err := json.Unmarshal(value, &a); err != nil {
			return fmt.Errorf("archive %s: %w", key, err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading archived witness states: %w", err)
	}
	return out, nil
}

// ClearFork marks the open fork evidence of database name as cleared by
// who, at now, and returns it. The evidence stays where it is; a record
// under witness/<name>/cleared/ says it was cleared, so nothing is ever
// deleted. Stored tiles and records that the witnessed tree does not
// authenticate are removed first (see purge): what a fork brought was
// never accepted. Once no evidence is open, the witness serves again,
// from the tree head it witnessed last: an upstream still on the forked
// timeline is caught again at once. Use it with the gate stopped (the
// running gate offers Witness.ClearFork).
func ClearFork(ctx context.Context, store Store, name, who string, now time.Time) ([]ClearedEvidence, error) {
	if _, err := purge(ctx, store, name); err != nil {
		return nil, err
	}
	return markCleared(ctx, store, name, who, now)
}

func markCleared(ctx context.Context, store Store, name, who string, now time.Time) ([]ClearedEvidence, error) {
	var done []ClearedEvidence
	err := store.Scan(ctx, evidenceKeyPrefix(name), func(key string, value []byte) error {
		suffix := strings.TrimPrefix(key, evidenceKeyPrefix(name))
		ce := ClearedEvidence{Key: key, ClearedAt: now.UTC(), ClearedBy: who}
		if err := json.Unmarshal(value, &ce.Evidence); err != nil {
			return fmt.Errorf("evidence %s: %w", key, err)
		}
		b, err := json.Marshal(ce)
		if err != nil {
			return err
		}
		ok, err := store.Swap(ctx, clearedKeyPrefix(name)+suffix, nil, b)
		if err != nil {
			return fmt.Errorf("clearing evidence %s: %w", key, err)
		}
		if ok { // not cleared before
			done = append(done, ce)
		}
		return nil
	})
	return done, err
}

// purge removes the stored tiles and records of database name that the
// witnessed tree does not authenticate from the store alone: a tile
// outside it, or one whose hashes do not lead to its signed root; a
// record past it. A tile removed here that was sound is read again from
// the upstream, and authenticated, when it is next needed. It returns the
// keys it removed.
func purge(ctx context.Context, store Store, name string) ([]string, error) {
	msg, err := store.Load(ctx, witnessStateKey(name))
	if err != nil {
		return nil, fmt.Errorf("loading witness state: %w", err)
	}
	tree := tlog.Tree{}
	if msg != nil {
		if tree, err = noteTree(string(msg)); err != nil {
			return nil, fmt.Errorf("stored witness state: %w", err)
		}
	}
	sw := &Witness{name: name, store: store, log: zap.NewNop()} // reads stored tiles only
	var drop []string
	err = store.Scan(ctx, dataPrefix(name), func(key string, value []byte) error {
		if !sw.authenticates(ctx, tree, strings.TrimPrefix(key, dataPrefix(name)), value) {
			drop = append(drop, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading stored checksum-database data: %w", err)
	}
	for _, key := range drop {
		if err := store.Delete(ctx, key); err != nil {
			return nil, fmt.Errorf("removing %s: %w", key, err)
		}
	}
	return drop, nil
}

// authenticates reports whether the stored value at path ("tile/..." or
// "lookup/...") belongs to tree, reading nothing but stored tiles.
func (w *Witness) authenticates(ctx context.Context, tree tlog.Tree, path string, value []byte) bool {
	if strings.HasPrefix(path, "lookup/") {
		id, _, _, err := tlog.ParseRecord(value)
		return err == nil && id < tree.N
	}
	t, err := tlog.ParseTilePath(path)
	if err != nil || !inTree(tree.N, t) {
		return false
	}
	want, err := tlog.ReadTileData(t, tlog.TileHashReader(tree, w.tiles(ctx, storedOnly)))
	return err == nil && bytes.Equal(want, value)
}

// Reset sets the witness state of database name aside, so that the next
// tree head of the upstream is accepted as the first: an operator's
// decision to follow a new upstream timeline. The witnessed head, the
// newest co-signed head and the open fork evidence are archived under
// witness/<name>/archive/ (kept, never deleted); the stored tiles and
// records of the old timeline are removed; the open evidence is marked
// cleared. Use it with the gate stopped (the running gate offers
// Witness.Reset). A crash part way leaves the witness failing closed, and
// Reset can run again.
func Reset(ctx context.Context, store Store, name, who, reason string, now time.Time) (Archive, error) {
	a := Archive{Time: now.UTC(), By: who, Reason: reason}
	msg, err := store.Load(ctx, witnessStateKey(name))
	if err != nil {
		return a, fmt.Errorf("loading witness state: %w", err)
	}
	a.Note = string(msg)
	if a.CoSigned, err = readHead(ctx, store, name); err != nil {
		return a, err
	}
	if a.Evidence, err = openEvidence(ctx, store, name); err != nil {
		return a, err
	}
	a.Key = archiveKeyPrefix(name) + fmt.Sprintf("%020d", a.Time.UnixNano())
	b, err := json.Marshal(a)
	if err != nil {
		return a, err
	}
	if err := store.Store(ctx, a.Key, b); err != nil {
		return a, fmt.Errorf("archiving the witness state: %w", err)
	}
	var drop []string
	err = store.Scan(ctx, dataPrefix(name), func(key string, _ []byte) error { drop = append(drop, key); return nil })
	if err != nil {
		return a, fmt.Errorf("reading stored checksum-database data: %w", err)
	}
	for _, key := range append(drop, coSignedKey(name), witnessStateKey(name)) {
		if err := store.Delete(ctx, key); err != nil {
			return a, fmt.Errorf("removing %s: %w", key, err)
		}
	}
	_, err = markCleared(ctx, store, name, who, now)
	return a, err
}

// ClearFork clears the open fork evidence (see the function ClearFork) and
// lets checksum-database requests through again, unless evidence that
// arrived meanwhile is still open.
func (w *Witness) ClearFork(ctx context.Context, who string) ([]ClearedEvidence, error) {
	removed, err := purge(ctx, w.store, w.name)
	if err != nil {
		return nil, err
	}
	done, err := markCleared(ctx, w.store, w.name, who, w.now())
	if err != nil {
		return done, err
	}
	if err := w.releaseFork(ctx); err != nil {
		return done, err
	}
	if err := w.reopen(ctx); err != nil {
		return done, err
	}
	if len(done) > 0 || len(removed) > 0 {
		w.log.Warn("fork evidence cleared by an operator; witnessing resumes from the last witnessed tree head",
			zap.String("who", who), zap.Int("evidence", len(done)), zap.Int("removed", len(removed)))
	}
	return done, nil
}

// Reset sets the witness state aside and follows a new upstream timeline
// (see the function Reset). Checksum-database requests fail while it runs.
func (w *Witness) Reset(ctx context.Context, who, reason string) (Archive, error) {
	w.forked.Store(true)
	w.epoch.Add(1) // what is read from now on belongs to the old timeline
	a, err := Reset(ctx, w.store, w.name, who, reason, w.now())
	if err != nil {
		return a, err
	}
	if err := w.releaseFork(ctx); err != nil {
		return a, err
	}
	w.headMu.Lock()
	w.head = nil
	w.headMu.Unlock()
	if err := w.reopen(ctx); err != nil {
		return a, err
	}
	w.log.Warn("witness reset by an operator: the old state is archived; "+
		"the next upstream tree head is accepted as the first",
		zap.String("who", who), zap.String("reason", reason), zap.String("archive", a.Key))
	return a, nil
}

// reopen reloads the persisted state and fails closed while evidence is open.
func (w *Witness) reopen(ctx context.Context) error {
	if err := w.reload(ctx); err != nil {
		return err
	}
	forked, err := w.storedFork(ctx)
	if err != nil {
		return err
	}
	w.forked.Store(forked)
	return nil
}
