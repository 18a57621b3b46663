package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Status is what a witness has on record: the newest witnessed tree head,
// the fork evidence that keeps it failing closed, and the evidence an
// operator has cleared.
type Status struct {
	Database string      `json:"database"`
	Tree     *TreeStatus `json:"tree,omitempty"` // nil before the first tree head
	// CoSigned is the newest tree head co-signed with the enterprise key,
	// nil before the first.
	CoSigned *CoSignedHead `json:"cosigned,omitempty"`
	// Forked reports open fork evidence: checksum-database requests fail
	// until an operator clears it.
	Forked   bool              `json:"forked"`
	Evidence []Evidence        `json:"evidence,omitempty"`
	Cleared  []ClearedEvidence `json:"cleared,omitempty"`
	// Archived are the states an operator set aside to accept a new
	// upstream timeline (see Reset), oldest first.
	Archived []Archive `json:"archived,omitempty"`
	// History summarizes when each tree size was first seen (history.go).
	History *HistoryStatus `json:"history,omitempty"`
}

// TreeStatus is a witnessed tree head.
type TreeStatus struct {
	Size int64  `json:"size"`
	Hash string `json:"hash"`
	Note string `json:"note"` // as the upstream signed it
}

// ClearedEvidence is fork evidence an operator has cleared. It is kept,
// never deleted.
type ClearedEvidence struct {
	Evidence
	Key       string    `json:"key"` // the key the evidence is stored under
	ClearedAt time.Time `json:"cleared_at"`
	ClearedBy string    `json:"cleared_by"`
}

// Keys of the witness state in a Store, for the database name.
func witnessStateKey(name string) string   { return "witness/" + name + "/latest" }
func evidenceKeyPrefix(name string) string { return "witness/" + name + "/evidence/" }
func clearedKeyPrefix(name string) string  { return "witness/" + name + "/cleared/" }

// ReadStatus reads the witness state of database name from store, for a
// tool that runs while the gate is stopped. The stored tree note was
// verified when it was stored; it is parsed here, not verified again.
func ReadStatus(ctx context.Context, store Store, name string) (Status, error) {
	st := Status{Database: name}
	msg, err := store.Load(ctx, witnessStateKey(name))
	if err != nil {
		return st, fmt.Errorf("loading witness state: %w", err)
	}
	if msg != nil {
		tree, err := noteTree(string(msg))
		if err != nil {
			return st, fmt.Errorf("stored witness state: %w", err)
		}
		st.Tree = &TreeStatus{Size: tree.N, Hash: tree.Hash.String(), Note: string(msg)}
	}
	if st.Evidence, err = openEvidence(ctx, store, name); err != nil {
		return st, err
	}
	st.Forked = len(st.Evidence) > 0
	if st.CoSigned, err = readHead(ctx, store, name); err != nil {
		return st, err
	}
	if st.Archived, err = archives(ctx, store, name); err != nil {
		return st, err
	}
	if st.Cleared, err = clearedEvidence(ctx, store, name); err != nil {
		return st, err
	}
	st.History, err = ReadHistory(ctx, store, name)
	return st, err
}

// Status returns the witness's state.
func (w *Witness) Status(ctx context.Context) (Status, error) {
	st, err := ReadStatus(ctx, w.store, w.name)
	if err != nil {
		return st, err
	}
	if tree, msg := w.State(); msg != nil {
		st.Tree = &TreeStatus{Size: tree.N, Hash: tree.Hash.String(), Note: string(msg)}
	}
	st.Forked = st.Forked || w.Forked()
	w.headMu.Lock()
	if w.head != nil {
		h := *w.head
		st.CoSigned = &h
	}
	w.headMu.Unlock()
	st.History = w.History()
	return st, nil
}

// openEvidence returns the fork evidence of database name that no
// operator has cleared, oldest first.
func openEvidence(ctx context.Context, store Store, name string) ([]Evidence, error) {
	cleared := map[string]bool{}
	err := store.Scan(ctx, clearedKeyPrefix(name), func(key string, _ []byte) error {
		cleared[strings.TrimPrefix(key, clearedKeyPrefix(name))] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading cleared fork evidence: %w", err)
	}
	var out []Evidence
	err = store.Scan(ctx, evidenceKeyPrefix(name), func(key string, value []byte) error {
		if cleared[strings.TrimPrefix(key, evidenceKeyPrefix(name))] {
			return nil
		}
		var ev Evidence
		if err := json.Unmarshal(value, &ev); err != nil {
			return fmt.Errorf("evidence %s: %w", key, err)
		}
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading fork evidence: %w", err)
	}
	return out, nil
}

// clearedEvidence returns the cleared fork evidence, oldest first.
func clearedEvidence(ctx context.Context, store Store, name string) ([]ClearedEvidence, error) {
	var out []ClearedEvidence
	err := store.Scan(ctx, clearedKeyPrefix(name), func(key string, value []byte) error {
		var ce ClearedEvidence
		if err := json.Unmarshal(value, &ce); err != nil {
			return fmt.Errorf("cleared evidence %s: %w", key, err)
		}
		out = append(out, ce)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading cleared fork evidence: %w", err)
	}
	return out, nil
}
