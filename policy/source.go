package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// Source holds the policy document where several gates share it (the
// cluster database). The policy file is then its seed at first start and a
// mirror that the gate rewrites: edits of the file are never read.
type Source interface {
	// Load returns the stored policy document (the YAML of Marshal) and its
	// version: nil and 0 when none is stored yet.
	Load(ctx context.Context) (data []byte, version int64, err error)
	// Store stores data if the stored version is still version (0: none is
	// stored), and returns the new version and true; false when another
	// writer stored first.
	Store(ctx context.Context, data []byte, version int64) (newVersion int64, ok bool, err error)
}

// Synced is the Event of a policy that another gate stored in the shared
// Source and that this gate now enforces. It is not audited again here.
const Synced EventKind = "sync"

// ErrHandEdit is logged, with what to do, when the policy file of a gate
// whose policy lives in a Source was edited: the edit is not in force.
var ErrHandEdit = errors.New("policy: this gate's policy lives in the cluster database; " +
	"the edit of the policy file is not in force")

// maxSourceTries bounds the retries of an Update that other gates' writes
// keep overtaking.
const maxSourceTries = 16

// OpenSource returns a File whose policy lives in src. If src holds none
// yet, the policy file at path seeds it (the first gate of a cluster). The
// file at path is then rewritten with the policy in force whenever it
// changes; an edit of it is reported (ErrHandEdit), never read.
func OpenSource(ctx context.Context, src Source, path string, log *zap.Logger) (*File, error) {
	if log == nil {
		log = zap.NewNop()
	}
	f := &File{path: path, log: log, src: src}
	data, ver, err := src.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: loading the shared policy: %w", err)
	}
	if data == nil {
		seed, err := readFile(path)
		if err != nil {
			return nil, err
		}
		if _, err := Parse(seed); err != nil {
			return nil, fmt.Errorf("%s (the seed of the shared policy): %w", path, err)
		}
		if _, ok, err := src.Store(ctx, seed, 0); err != nil {
			return nil, fmt.Errorf("policy: seeding the shared policy: %w", err)
		} else if ok {
			log.Info("the policy file seeded the shared policy", zap.String("path", path))
		}
		if data, ver, err = src.Load(ctx); err != nil {
			return nil, fmt.Errorf("policy: loading the shared policy: %w", err)
		}
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy: the shared policy (version %d): %w", ver, err)
	}
	f.cur.Store(p)
	f.ver = ver
	f.mirror(data)
	return f, nil
}

// mirror writes data to the policy file, unless it holds it already, and
// remembers its hash to tell the gate's writes from hand edits.
func (f *File) mirror(data []byte) {
	f.hash = sha256.Sum256(data)
	if cur, err := readFile(f.path); err == nil && sha256.Sum256(cur) == f.hash {
		return
	}
	if err := writeAtomic(f.path, data); err != nil {
		f.log.Warn("cannot write the policy in force to the policy file", zap.String("path", f.path), zap.Error(err))
	}
}

// syncSourceLocked takes into force what another gate stored in the
// Source, and reports an edit of the mirror file once per content.
func (f *File) syncSourceLocked(ctx context.Context) (*Event, error) {
	if data, err := readStable(f.path); err == nil {
		if h := sha256.Sum256(data); h != f.hash && (f.refused == nil || *f.refused != h) {
			f.refused = &h
			f.log.Error("the policy file was edited, but a clustered gate reads its policy from the cluster database",
				zap.String("path", f.path), zap.Error(ErrHandEdit),
				zap.String("do", "change the policy with modgate policy (allow, deny, rm or import "+f.path+
					") or the admin API: every gate enforces it within a second; this file is rewritten then"))
		}
	}
	data, ver, err := f.src.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: loading the shared policy: %w", err)
	}
	if ver == f.ver || data == nil {
		return nil, nil
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy: the shared policy (version %d): %w", ver, err)
	}
	before := f.cur.Load()
	f.cur.Store(p)
	f.ver = ver
	f.refused = nil
	f.mirror(data)
	f.log.Info("shared policy in force", zap.Int64("version", ver), zap.Int("rules", len(p.Rules)))
	return &Event{Kind: Synced, Path: f.path, Before: before, After: p}, nil
}

// applySourceLocked changes the shared policy with fn by compare-and-swap:
// when another gate stored first, its policy is loaded and fn applied to
// it again.
func (f *File) applySourceLocked(ctx context.Context, fn func(*Policy) error) (before, after *Policy, err error) {
	for range maxSourceTries {
		before = f.cur.Load()
		next, data, err := changed(before, fn)
		if err != nil {
			return nil, nil, err
		}
		ver, ok, err := f.src.Store(ctx, data, f.ver)
		if err != nil {
			return nil, nil, fmt.Errorf("policy: storing the shared policy: %w", err)
		}
		if ok {
			f.cur.Store(next)
			f.ver = ver
			f.mirror(data)
			f.log.Info("shared policy stored", zap.Int64("version", ver), zap.Int("rules", len(next.Rules)))
			return before, next, nil
		}
		if _, err := f.syncSourceLocked(ctx); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("policy: other gates kept changing the shared policy; try again")
}
