package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A Store shared by several witnesses (Config.Shared: the gates of a
// cluster on one database) changes under each of them. What one witness
// keeps in memory is then a cache of the Store, which Sync refreshes, and
// every write that others could race is a compare-and-swap:
//   - the witnessed head (as always): at most one head per tree size;
//   - the fork marker: one witness records the evidence of a fork, the
//     others only fail closed;
//   - the newest co-signed head: it never moves back;
//   - the history of tree heads: each day's segment is merged, not
//     overwritten.

func forkMarkerKey(name string) string { return "witness/" + name + "/fork" }

// Sync reloads what other witnesses on a shared Store may have changed: the
// witnessed head, whether a fork is open (evidence, or a fork being
// recorded), the newest co-signed head and the history of tree heads. A
// gate calls it when the Store announces a change, and periodically.
func (w *Witness) Sync(ctx context.Context) error {
	if err := w.reload(ctx); err != nil {
		return err
	}
	forked, err := w.storedFork(ctx)
	if err != nil {
		return err
	}
	w.forked.Store(forked)
	head, err := readHead(ctx, w.store, w.name)
	if err != nil {
		return err
	}
	w.headMu.Lock()
	if head == nil || w.head == nil || head.Size > w.head.Size {
		w.head = head
	}
	w.headMu.Unlock()
	stored, err := loadHistory(ctx, w.store, w.name, w.log, true)
	if err != nil {
		return err
	}
	w.history.mu.Lock()
	w.history.entries = mergeHistory(stored.entries, w.history.entries)
	w.history.mu.Unlock()
	return nil
}

// catchUp reloads the witnessed head from a shared Store, where another
// witness may have moved it past this one's view; with a Store of its own
// the view is never behind, and it does nothing.
func (w *Witness) catchUp(ctx context.Context) {
	if !w.shared {
		return
	}
	if err := w.reload(ctx); err != nil {
		w.log.Warn("cannot reload the shared witness state", zap.Error(err))
	}
}

// storedFork reports whether the Store holds open fork evidence or the
// marker of a fork being recorded.
func (w *Witness) storedFork(ctx context.Context) (bool, error) {
	m, err := w.store.Load(ctx, forkMarkerKey(w.name))
	if err != nil {
		return false, fmt.Errorf("loading the fork marker: %w", err)
	}
	if m != nil {
		return true, nil
	}
	open, err := openEvidence(ctx, w.store, w.name)
	return len(open) > 0, err
}

// claimFork reports whether this witness is the one to record the evidence
// of a fork: the first to set the fork marker since the last clear-fork.
// Without a shared Store it always is. A failed claim is no claim: the
// witness fails closed anyway, and logs the evidence.
func (w *Witness) claimFork(ctx context.Context, evidenceKey string) bool {
	if !w.shared {
		return true
	}
	ok, err := w.store.Swap(ctx, forkMarkerKey(w.name), nil, []byte(evidenceKey))
	if err != nil {
		w.log.Error("cannot mark the fork in the shared store", zap.Error(err))
	}
	return ok
}

// releaseFork removes the fork marker once the evidence is cleared.
func (w *Witness) releaseFork(ctx context.Context) error {
	if !w.shared {
		return nil
	}
	if err := w.store.Delete(ctx, forkMarkerKey(w.name)); err != nil {
		return fmt.Errorf("removing the fork marker: %w", err)
	}
	return nil
}

// noteCoSignedShared moves the newest co-signed head in a shared Store to
// signed, by compare-and-swap, unless another witness stored a larger one.
// w.headMu is held.
func (w *Witness) noteCoSignedShared(ctx context.Context, n *note.Note, tree tlog.Tree, signed []byte) {
	h := &CoSignedHead{Size: tree.N, Hash: tree.Hash.String(), Note: string(signed), Time: w.now().UTC()}
	b, err := json.Marshal(h)
	for try := 0; err == nil && try < 16; try++ {
		var cur []byte
		if cur, err = w.store.Load(ctx, coSignedKey(w.name)); err != nil {
			break
		}
		if cur != nil {
			var have CoSignedHead
			if err = json.Unmarshal(cur, &have); err != nil {
				break
			}
			if have.Size >= tree.N {
				w.head = &have
				return
			}
		}
		var ok bool
		if ok, err = w.store.Swap(ctx, coSignedKey(w.name), cur, b); ok {
			w.head = h
			return
		}
	}
	w.head = h // served in memory; the store catches up with the next head
	w.log.Warn("cannot store the newest co-signed tree head", zap.Int64("size", tree.N), zap.Error(err))
}

// persistShared merges the segment of day into the stored one by
// compare-and-swap, so that witnesses sharing the Store add to each
// other's history rather than overwrite it.
func (h *history) persistShared(ctx context.Context, day int64) error {
	key := h.dayKey(day)
	for try := 0; try < 16; try++ {
		cur, err := h.store.Load(ctx, key)
		if err != nil {
			return err
		}
		var stored []histEntry
		if cur != nil {
			if stored, err = decodeSegment(cur); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrHistory, key, err)
			}
		}
		h.mu.RLock()
		mine := h.segment(day)
		h.mu.RUnlock()
		merged := mergeHistory(stored, mine)
		if cur != nil && bytes.Equal(encodeSegment(merged), cur) {
			return nil
		}
		ok, err := h.store.Swap(ctx, key, cur, encodeSegment(merged))
		if err != nil || ok {
			return err
		}
	}
	return fmt.Errorf("the history segment %s kept changing", key)
}

// mergeHistory merges two histories into one whose sizes and times both
// grow. An entry says "a tree of this size was seen by then", so one that
// a larger tree seen no later dominates is dropped: two gates record the
// heads they accepted after the fact, and their clocks differ a little.
func mergeHistory(a, b []histEntry) []histEntry {
	all := slices.Concat(a, b)
	slices.SortFunc(all, func(x, y histEntry) int {
		if c := cmpInt(x.size, y.size); c != 0 {
			return c
		}
		return cmpInt(x.nanos, y.nanos)
	})
	out := make([]histEntry, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- {
		n := len(out)
		switch {
		case n > 0 && all[i].size == out[n-1].size:
			out[n-1].nanos = min(out[n-1].nanos, all[i].nanos)
		case n == 0 || all[i].nanos < out[n-1].nanos:
			out = append(out, all[i])
		}
	}
	slices.Reverse(out)
	return out
}

// forkedInStore reports, for a shared Store, whether another witness
// marked a fork that this one has not synced yet; it is checked before a
// new tree head is accepted.
func (w *Witness) forkedInStore(ctx context.Context) error {
	if !w.shared {
		return nil
	}
	m, err := w.store.Load(ctx, forkMarkerKey(w.name))
	if err != nil {
		return fmt.Errorf("loading the fork marker: %w", err)
	}
	if m != nil {
		w.forked.Store(true)
		return ErrFork
	}
	return nil
}
