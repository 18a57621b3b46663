package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors the proxy branches on.
var (
	// ErrFork reports a tree head that is not on the witnessed timeline, or
	// any checksum-database request after such a fork was recorded: the
	// witness fails closed until an operator acts.
	ErrFork = errors.New("checksum database fork detected")
	// ErrVerify reports upstream data that does not verify: a bad or unknown
	// signature, a malformed note or record, a record or tile that is not in
	// the signed tree.
	ErrVerify = errors.New("checksum database data does not verify")
	// ErrNotFound reports a request the witness cannot answer from a
	// witnessed tree, such as a tile beyond it.
	ErrNotFound = errors.New("not in the witnessed checksum database")
)

// Remote reads the upstream checksum database. Paths are relative to the
// database URL and start with a slash: "/latest", "/lookup/M@V",
// "/tile/8/0/001". The witness returns its errors wrapped with %w, so the
// caller can tell an upstream failure from a verification failure.
type Remote interface {
	ReadRemote(ctx context.Context, path string) ([]byte, error)
}

// Store keeps the witness state, fork evidence, and verified records and
// tiles. The witness writes nothing to it that it has not verified.
type Store interface {
	// Load returns the value stored under key, or nil and no error if none is.
	Load(ctx context.Context, key string) ([]byte, error)
	// Store stores value under key.
	Store(ctx context.Context, key string, value []byte) error
	// Swap stores new under key if the current value equals old (nil: the
	// key is absent) and reports whether it did.
	Swap(ctx context.Context, key string, old, new []byte) (bool, error)
	// Scan calls fn for each key with the prefix, in key order.
	Scan(ctx context.Context, prefix string, fn func(key string, value []byte) error) error
	// Delete removes the value stored under key; an absent key is no error.
	// Only an operator's clear-fork and reset delete (see ClearFork, Reset).
	Delete(ctx context.Context, key string) error
}

// Config configures a Witness. Upstream, Signer, Store and Remote are required.
type Config struct {
	Upstream string      // the upstream database's verifier key
	Signer   note.Signer // the enterprise key that co-signs witnessed tree heads
	Store    Store
	Remote   Remote
	Logger   *zap.Logger      // nil means zap.NewNop()
	Now      func() time.Time // nil means time.Now
}

// Evidence is the proof of a fork: two tree heads signed by the upstream key
// where the newer tree does not contain the older one.
type Evidence struct {
	Time       time.Time `json:"time"`
	OlderNote  string    `json:"older_note"`
	NewerNote  string    `json:"newer_note"`
	OlderSize  int64     `json:"older_size"`
	NewerSize  int64     `json:"newer_size"`
	OlderHash  string    `json:"older_hash"`
	NewerHash  string    `json:"newer_hash,omitempty"`
	ComputedAt string    `json:"computed_hash"` // hash of the first OlderSize records per the newer tree
	// Proof is the tlog tree proof that the newer tree's first OlderSize
	// records hash to ComputedAt, made from hashes that authenticate the
	// newer tree's signed root (see CheckProof). Empty for two trees of one
	// size: their notes are the proof.
	Proof []string `json:"proof,omitempty"`
}

// Witness verifies the upstream checksum database and co-signs tree heads
// that are consistent with everything it has witnessed before.
type Witness struct {
	name     string
	verifier note.Verifiers
	signer   note.Signer
	store    Store
	remote   Remote
	log      *zap.Logger
	now      func() time.Time
	forked   atomic.Bool
	// epoch counts operator resets (see Reset): what was read before one
	// belongs to the old timeline and is not stored after it.
	epoch atomic.Uint64

	mu        sync.Mutex
	latest    tlog.Tree
	latestMsg []byte
	cosigned  []byte // latestMsg co-signed, made on demand

	headMu sync.Mutex
	head   *CoSignedHead // the newest tree head co-signed, nil before the first

	history *history // when each tree size was first seen (history.go)
}

// New returns a Witness over cfg.Store, loading the persisted state and any
// fork evidence.
func New(ctx context.Context, cfg Config) (*Witness, error) {
	v, err := note.NewVerifier(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream checksum database key: %w", err)
	}
	if cfg.Signer == nil || cfg.Store == nil || cfg.Remote == nil {
		return nil, errors.New("witness: Signer, Store and Remote are required")
	}
	w := &Witness{
		name: v.Name(), verifier: note.VerifierList(v), signer: cfg.Signer,
		store: cfg.Store, remote: cfg.Remote, log: cfg.Logger, now: cfg.Now,
	}
	if w.log == nil {
		w.log = zap.NewNop()
	}
	if w.now == nil {
		w.now = time.Now
	}
	if err := w.reload(ctx); err != nil {
		return nil, err
	}
	if err := w.openHistory(ctx); err != nil {
		return nil, err
	}
	ev, err := w.Evidence(ctx)
	if err != nil {
		return nil, err
	}
	w.forked.Store(len(ev) > 0)
	if w.head, err = readHead(ctx, w.store, w.name); err != nil {
		return nil, err
	}
	return w, nil
}

// Name is the name of the witnessed database, such as "sum.golang.org".
func (w *Witness) Name() string { return w.name }

// Forked reports whether fork evidence is on record.
func (w *Witness) Forked() bool { return w.forked.Load() }

func (w *Witness) stateKey() string       { return witnessStateKey(w.name) }
func (w *Witness) evidencePrefix() string { return evidenceKeyPrefix(w.name) }

// reload reads the persisted state into memory.
func (w *Witness) reload(ctx context.Context) error {
	msg, err := w.store.Load(ctx, w.stateKey())
	if err != nil {
		return fmt.Errorf("loading witness state: %w", err)
	}
	tree := tlog.Tree{}
	if msg != nil {
		if _, tree, err = w.open(msg); err != nil {
			return fmt.Errorf("stored witness state: %w", err)
		}
	}
	w.mu.Lock()
	if tree.N >= w.latest.N || msg == nil {
		w.latest, w.latestMsg, w.cosigned = tree, msg, nil
	}
	w.mu.Unlock()
	return nil
}

// State returns the newest witnessed tree and its upstream-signed note
// (nil before the first tree head is witnessed).
func (w *Witness) State() (tlog.Tree, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest, w.latestMsg
}

// TreeSize is the size of the newest witnessed tree.
func (w *Witness) TreeSize() int64 {
	tree, _ := w.State()
	return tree.N
}

// open verifies msg with the upstream key and parses its tree.
func (w *Witness) open(msg []byte) (*note.Note, tlog.Tree, error) {
	n, err := note.Open(msg, w.verifier)
	if err != nil {
		return nil, tlog.Tree{}, fmt.Errorf("%w: tree note: %v", ErrVerify, err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return nil, tlog.Tree{}, fmt.Errorf("%w: tree note: %v", ErrVerify, err)
	}
	return n, tree, nil
}

// Observe verifies a signed tree head and checks that it is on the witnessed
// timeline; a newer head moves the persisted state forward. It returns the
// verified note and its tree.
func (w *Witness) Observe(ctx context.Context, msg []byte) (*note.Note, tlog.Tree, error) {
	return w.observe(ctx, msg, w.remote, nil)
}

// observe is Observe with the tiles of a newer tree read from remote (the
// upstream, or an imported bundle), and the history entries seen recorded
// before a newer head (nil: the head is seen now).
func (w *Witness) observe(ctx context.Context, msg []byte, remote Remote, seen []HistoryEntry) (*note.Note, tlog.Tree, error) {
	if w.Forked() {
		return nil, tlog.Tree{}, ErrFork
	}
	n, tree, err := w.open(msg)
	if err != nil {
		return nil, tlog.Tree{}, err
	}
	for {
		latest, latestMsg := w.State()
		if tree.N <= latest.N {
			// An older head must be a prefix of the accepted one, whose
			// stored tiles are authenticated.
			r := w.tilesFrom(ctx, accepted, remote)
			return n, tree, w.consistent(ctx, r, head{tree, msg}, head{latest, latestMsg})
		}
		// A newer head is checked with the upstream's own tiles for it:
		// stored tiles belong to the witnessed tree, and a fork would make
		// them disagree with the new one, hiding the proof.
		r := w.tilesFrom(ctx, candidate, remote)
		if err := w.consistent(ctx, r, head{latest, latestMsg}, head{tree, msg}); err != nil {
			return nil, tlog.Tree{}, err
		}
		ok, err := w.store.Swap(ctx, w.stateKey(), latestMsg, msg)
		if err != nil {
			return nil, tlog.Tree{}, fmt.Errorf("saving witness state: %w", err)
		}
		if ok {
			if seen == nil {
				seen = []HistoryEntry{{Size: tree.N, Time: w.now()}}
			}
			w.accept(ctx, r, tree, msg, seen)
			return n, tree, nil
		}
		if err := w.reload(ctx); err != nil { // another writer moved the state
			return nil, tlog.Tree{}, err
		}
	}
}

// accept runs once the persisted state has moved to tree: it stores the
// tiles authenticated for tree while it was a candidate, and records in
// the history the entries seen (the last of which is tree's). A new
// witnessed head is noted here, and only here.
func (w *Witness) accept(ctx context.Context, r *tileReader, tree tlog.Tree, msg []byte, seen []HistoryEntry) {
	w.mu.Lock()
	if tree.N > w.latest.N {
		w.latest, w.latestMsg, w.cosigned = tree, msg, nil
	}
	w.mu.Unlock()
	for _, at := range r.authenticated() {
		w.saveTile(ctx, r.epoch, at.tile, at.data)
	}
	for _, e := range seen {
		w.history.record(ctx, e.Size, e.Time)
	}
	w.log.Info("witnessed tree head", zap.String("db", w.name), zap.Int64("size", tree.N))
}

// head is a tree and the upstream-signed note of it.
type head struct {
	tree tlog.Tree
	msg  []byte
}

// consistent checks that newer contains older, reading newer's hashes
// through r. Hashes that authenticate newer's signed root but give older
// another hash prove a fork: it is recorded with that proof, and the
// witness fails closed. Tiles that do not authenticate newer's root are
// ErrVerify (or the upstream's error), and record nothing.
func (w *Witness) consistent(ctx context.Context, r *tileReader, older, newer head) error {
	if older.tree.N == 0 {
		return nil
	}
	h, proof := newer.tree.Hash, tlog.TreeProof(nil)
	if older.tree.N < newer.tree.N {
		thr := tlog.TileHashReader(newer.tree, r)
		var err error
		if h, err = tlog.TreeHash(older.tree.N, thr); err != nil {
			return w.tileError(fmt.Sprintf("checking tree #%d against tree #%d", older.tree.N, newer.tree.N), err)
		}
		if h != older.tree.Hash {
			if proof, err = tlog.ProveTree(newer.tree.N, older.tree.N, thr); err != nil {
				return w.tileError(fmt.Sprintf("proving tree #%d in tree #%d", older.tree.N, newer.tree.N), err)
			}
		}
	}
	if h == older.tree.Hash {
		return nil
	}
	ev := Evidence{
		Time: w.now().UTC(), OlderNote: string(older.msg), NewerNote: string(newer.msg),
		OlderSize: older.tree.N, NewerSize: newer.tree.N, OlderHash: older.tree.Hash.String(), ComputedAt: h.String(),
		NewerHash: newer.tree.Hash.String(),
	}
	for _, ph := range proof {
		ev.Proof = append(ev.Proof, ph.String())
	}
	w.recordFork(ctx, ev)
	return fmt.Errorf("%w: tree #%d is not an extension of tree #%d witnessed before",
		ErrFork, max(older.tree.N, newer.tree.N), min(older.tree.N, newer.tree.N))
}

// recordFork persists the evidence and fails closed from now on.
func (w *Witness) recordFork(ctx context.Context, ev Evidence) {
	w.forked.Store(true)
	b, _ := json.Marshal(ev)
	key := w.evidencePrefix() + fmt.Sprintf("%020d", ev.Time.UnixNano())
	if err := w.store.Store(ctx, key, b); err != nil {
		w.log.Error("cannot store fork evidence", zap.Error(err), zap.ByteString("evidence", b))
	}
	w.log.Error("checksum database fork detected: refusing to co-sign",
		zap.String("db", w.name), zap.Int64("older_size", ev.OlderSize), zap.Int64("newer_size", ev.NewerSize),
		zap.String("older_note", ev.OlderNote), zap.String("newer_note", ev.NewerNote))
}

// Evidence returns the fork evidence on record that no operator has
// cleared (see ClearFork), oldest first.
func (w *Witness) Evidence(ctx context.Context) ([]Evidence, error) {
	return openEvidence(ctx, w.store, w.name)
}

// CoSign observes msg and returns it with the enterprise signature added.
func (w *Witness) CoSign(ctx context.Context, msg []byte) ([]byte, tlog.Tree, error) {
	n, tree, err := w.Observe(ctx, msg)
	if err != nil {
		return nil, tlog.Tree{}, err
	}
	signed, err := w.sign(ctx, n)
	return signed, tree, err
}

// Current returns the newest witnessed tree head, co-signed, without asking
// the upstream. It fails with ErrNotFound before any head is witnessed.
func (w *Witness) Current(ctx context.Context) ([]byte, tlog.Tree, error) {
	if w.Forked() {
		return nil, tlog.Tree{}, ErrFork
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latestMsg == nil {
		return nil, tlog.Tree{}, fmt.Errorf("%w: no tree head witnessed yet", ErrNotFound)
	}
	if w.cosigned == nil {
		n, err := note.Open(w.latestMsg, w.verifier)
		if err != nil {
			return nil, tlog.Tree{}, fmt.Errorf("%w: stored tree note: %v", ErrVerify, err)
		}
		if w.cosigned, err = w.sign(ctx, n); err != nil {
			return nil, tlog.Tree{}, err
		}
	}
	return w.cosigned, w.latest, nil
}

// Latest fetches the upstream's newest tree head, witnesses it, and returns
// it co-signed.
func (w *Witness) Latest(ctx context.Context) ([]byte, tlog.Tree, error) {
	if w.Forked() {
		return nil, tlog.Tree{}, ErrFork
	}
	msg, err := w.remote.ReadRemote(ctx, "/latest")
	if err != nil {
		return nil, tlog.Tree{}, fmt.Errorf("reading %s/latest: %w", w.name, err)
	}
	return w.CoSign(ctx, msg)
}
