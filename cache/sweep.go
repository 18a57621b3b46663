package cache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// gcDiscardRatio is the fraction of a value log file that must be garbage
// before value log GC rewrites it.
const gcDiscardRatio = 0.5

// Sweep deletes orphan chunks: chunks of a generation that no manifest
// refers to, left by a PutBlob or Delete that the process did not live to
// finish. Open calls it; it is safe to call while the store is in use (it
// leaves the chunks of PutBlob calls in progress alone).
func (s *Store) Sweep(ctx context.Context) error {
	_, err := s.sweep(ctx)
	return err
}

// sweep deletes orphan chunks and returns the highest generation it saw.
func (s *Store) sweep(ctx context.Context) (uint64, error) {
	// The snapshot and the set of generations in flight are taken together:
	// a generation whose chunks are in the snapshot but whose manifest is
	// not was either in flight then (left alone) or is an orphan.
	s.mu.Lock()
	txn := s.db.NewTransaction(false)
	busy := maps.Clone(s.inflight)
	s.mu.Unlock()
	defer txn.Discard()

	live, maxGen, err := s.liveGens(ctx, txn)
	if err != nil {
		return 0, err
	}
	orphans, maxChunkGen, err := orphanChunks(ctx, txn, live, busy)
	if err != nil {
		return 0, err
	}
	if err := s.deleteKeys(orphans); err != nil {
		return 0, fmt.Errorf("cache: sweep: %w", err)
	}
	if len(orphans) > 0 {
		s.log.Info("swept orphan blob chunks", zap.Int("chunks", len(orphans)))
	}
	return max(maxGen, maxChunkGen), nil
}

// liveGens returns the generations that manifests refer to, and the highest.
// Corrupt manifests are logged and skipped.
func (s *Store) liveGens(ctx context.Context, txn *badger.Txn) (map[uint64]struct{}, uint64, error) {
	live := make(map[uint64]struct{})
	var maxGen uint64
	err := scanManifests(ctx, txn, "", func(key []byte, m manifest, err error) error {
		if err != nil {
			s.log.Warn("skipping corrupt blob manifest", zap.ByteString("key", key), zap.Error(err))
			return nil
		}
		live[m.gen] = struct{}{}
		maxGen = max(maxGen, m.gen)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cache: sweep: %w", err)
	}
	return live, maxGen, nil
}

// orphanChunks returns the keys of the chunks whose generation is neither
// live nor busy, and the highest generation of any chunk.
func orphanChunks(ctx context.Context, txn *badger.Txn, live, busy map[uint64]struct{}) ([][]byte, uint64, error) {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = []byte(prefixChunk)
	it := txn.NewIterator(opts)
	defer it.Close()
	var orphans [][]byte
	var maxGen uint64
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		k := it.Item().Key()
		gen, ok := parseChunkKey(k)
		if !ok {
			continue
		}
		maxGen = max(maxGen, gen)
		_, isLive := live[gen]
		_, isBusy := busy[gen]
		if !isLive && !isBusy {
			orphans = append(orphans, it.Item().KeyCopy(nil))
		}
	}
	return orphans, maxGen, nil
}

// deleteKeys deletes keys in as few transactions as Badger allows.
func (s *Store) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}

// RunGC runs Badger's value log garbage collection until no file is worth
// rewriting, reclaiming the disk space of deleted and replaced blobs. It
// does nothing for an in-memory store. Open starts a background loop that
// calls it every Config.GCInterval.
func (s *Store) RunGC(ctx context.Context) error {
	if s.inMemory {
		return nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A rewrite writes the live part of a value log file (at most
		// ValueLogFileSize) into the newest one, perhaps into a new file:
		// only with Badger's reserve free, never into a full disk.
		if err := s.disk.roomForRewrite(); err != nil {
			return fmt.Errorf("cache: value log gc skipped: %w", err)
		}
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cache: value log gc: %w", err)
		}
	}
}

// gcLoop calls RunGC every interval until ctx is done.
func (s *Store) gcLoop(ctx context.Context, interval time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.RunGC(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("value log gc", zap.Error(err))
			}
		}
	}
}
