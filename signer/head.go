package signer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// CoSignedHead is the newest tree head the witness has co-signed with the
// enterprise key: what clients pinned to that key have seen at most.
type CoSignedHead struct {
	Size int64     `json:"size"`
	Hash string    `json:"hash"`
	Note string    `json:"note"` // with the upstream's and the enterprise signatures
	Time time.Time `json:"time"` // when it was first co-signed
}

func coSignedKey(name string) string { return "witness/" + name + "/cosigned" }

// readHead reads the newest co-signed head of database name, or nil.
func readHead(ctx context.Context, store Store, name string) (*CoSignedHead, error) {
	b, err := store.Load(ctx, coSignedKey(name))
	if err != nil || b == nil {
		return nil, err
	}
	var h CoSignedHead
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("stored co-signed head: %w", err)
	}
	return &h, nil
}

// noteCoSigned remembers signed, the co-signed n, if its tree is the
// largest co-signed so far; it is persisted once per new size.
func (w *Witness) noteCoSigned(ctx context.Context, n *note.Note, signed []byte) {
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return // n was verified and parsed before it was signed
	}
	w.headMu.Lock()
	defer w.headMu.Unlock()
	if w.head != nil && w.head.Size >= tree.N {
		return
	}
	if w.shared {
		w.noteCoSignedShared(ctx, n, tree, signed)
		return
	}
	h := &CoSignedHead{Size: tree.N, Hash: tree.Hash.String(), Note: string(signed), Time: w.now().UTC()}
	w.head = h
	b, err := json.Marshal(h)
	if err == nil {
		err = w.store.Store(ctx, coSignedKey(w.name), b)
	}
	if err != nil {
		w.log.Warn("cannot store the newest co-signed tree head", zap.Int64("size", tree.N), zap.Error(err))
	}
}

// CheckProof checks the evidence on its own, with no store and no
// upstream: the notes carry the recorded trees, and the proof shows that
// the newer tree's first OlderSize records hash to ComputedAt, which is
// not OlderHash. The notes' upstream signatures were verified when the
// evidence was recorded; CheckProof does not need the key.
func (ev Evidence) CheckProof() error {
	older, err := noteTree(ev.OlderNote)
	if err != nil {
		return fmt.Errorf("older note: %w", err)
	}
	newer, err := noteTree(ev.NewerNote)
	if err != nil {
		return fmt.Errorf("newer note: %w", err)
	}
	if older.N != ev.OlderSize || older.Hash.String() != ev.OlderHash || newer.N != ev.NewerSize {
		return fmt.Errorf("the notes do not carry the recorded trees")
	}
	computed, err := tlog.ParseHash(ev.ComputedAt)
	if err != nil {
		return fmt.Errorf("computed hash: %w", err)
	}
	if older.N == newer.N {
		if older.Hash == newer.Hash {
			return fmt.Errorf("two notes of tree #%d with one hash are no fork", older.N)
		}
		return nil
	}
	if computed == older.Hash {
		return fmt.Errorf("the computed hash equals the older tree's: no fork")
	}
	var proof tlog.TreeProof
	for _, s := range ev.Proof {
		h, err := tlog.ParseHash(s)
		if err != nil {
			return fmt.Errorf("proof: %w", err)
		}
		proof = append(proof, h)
	}
	if err := tlog.CheckTree(proof, newer.N, newer.Hash, older.N, computed); err != nil {
		return fmt.Errorf("proof of tree #%d in tree #%d: %w", older.N, newer.N, err)
	}
	return nil
}

// noteTree parses the tree of a signed tree note without verifying it.
func noteTree(msg string) (tlog.Tree, error) {
	text, _, ok := bytes.Cut([]byte(msg), []byte("\n\n"))
	if !ok {
		return tlog.Tree{}, fmt.Errorf("not a signed note")
	}
	return tlog.ParseTree(append(text, '\n'))
}
