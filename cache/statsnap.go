package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// The statistics saved at Close.
//
// Stats are kept incrementally, but the counts start from a scan at Open:
// a key-only walk of every small value and blob manifest, which takes
// seconds on a cache of a million objects and brings every page of the
// LSM tree into the process's resident set. So Close saves the counts
// under markerStats, and the next Open uses them instead of the scan when
// nothing was written after them: the record's Badger version must be the
// highest in the database. Any later commit (a write by a process that
// then crashed, a write racing Close) makes it stale, and Open scans.

// markerStats is the key of the statistics saved at Close.
const markerStats = "m/stats"

// saveStats writes the counts for the next Open. A failure is only logged:
// that Open scans.
func (s *Store) saveStats() {
	if s.inMemory {
		return
	}
	st := s.stats.snapshot()
	rec, err := json.Marshal(st)
	if err == nil {
		err = s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(markerStats), rec) })
	}
	if err != nil {
		s.log.Warn("saving the cache statistics for the next start", zap.Error(err))
	}
}

// loadStats returns the counts saved by the last Close if nothing was
// committed after them.
func (s *Store) loadStats() (Stats, bool) {
	var st Stats
	var version uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(markerStats))
		if err != nil {
			return err
		}
		version = item.Version()
		return item.Value(func(b []byte) error { return json.Unmarshal(b, &st) })
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return Stats{}, false
	case err != nil:
		s.log.Warn("ignoring the saved cache statistics", zap.Error(err))
		return Stats{}, false
	case version != s.db.MaxVersion() || !st.consistent():
		return Stats{}, false
	}
	return st, true
}

// consistent reports whether the totals of st are the sums of its kinds.
func (st Stats) consistent() bool {
	var objects, bytes int64
	for _, k := range st.Kinds {
		if k.Objects <= 0 || k.Bytes < 0 {
			return false
		}
		objects += k.Objects
		bytes += k.Bytes
	}
	return st.Kinds != nil && objects == st.TotalObjects && bytes == st.TotalBytes
}

// initStats sets the counts at Open: the saved ones if they hold, else a
// scan.
func (s *Store) initStats(ctx context.Context, saved Stats, ok bool) error {
	if !ok {
		var err error
		if saved, err = s.scanStats(ctx); err != nil {
			return fmt.Errorf("cache: stats: %w", err)
		}
	}
	s.stats.set(saved)
	s.statsSaved = ok
	s.grew()
	return nil
}
