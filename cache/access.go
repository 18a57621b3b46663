package cache

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Access tracking for the bounded cache (Config.MaxSize).
//
// A read must not cost a write, so Get and OpenBlob only note the time of
// the access in an in-memory map (one map assignment under a mutex). The
// map moves the objects' records in the access-order index (index.go)
// every Config.AccessFlushInterval, when it holds maxPendingAccess keys,
// before every eviction pass and on Close. A key read a thousand times
// between two flushes costs one move. Put and PutBlob write the records
// in the transaction that stores the object, so every evictable object has
// them from its first write on. A crash loses at most one interval of access
// times: those objects then look older than they are, which only affects
// which objects are evicted first.

// prefixAccess is the prefix of the internal access-time keys.
const prefixAccess = "a/"

// maxPendingAccess is the number of distinct keys read since the last
// flush from which a flush is started early (bounding the map to a few MiB).
const maxPendingAccess = 1 << 16

// DefaultAccessFlushInterval is the default interval at which access times
// are written to disk.
const DefaultAccessFlushInterval = 30 * time.Second

// DefaultEvictable is the default Config.Evictable: the immutable objects,
// whose kind (the key's part before the first '/') is zip, mod, info or
// sumdb (verified checksum-database lookups and tiles). Everything else —
// witness state and fork evidence ("witness/"), audit records ("audit/"),
// list and @latest answers, policy — is never evicted.
func DefaultEvictable(key string) bool {
	kind, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	switch kind {
	case "zip", "mod", "info", "sumdb":
		return true
	}
	return false
}

func accessKey(key string) []byte { return append([]byte(prefixAccess), key...) }

func encodeAccess(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(t.UnixNano()))
}

// decodeAccess returns the access time in Unix nanoseconds of an a/
// record (with or without its size, see index.go); 0 (the oldest) for a
// malformed record.
func decodeAccess(b []byte) int64 {
	if len(b) < 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

// tracks reports whether accesses to key are tracked: only when the cache
// is bounded, and only for evictable keys.
func (s *Store) tracks(key string) bool {
	return s.maxSize > 0 && s.evictable(key)
}

// touch notes a read of key. It never writes to disk.
func (s *Store) touch(key string) {
	if !s.tracks(key) {
		return
	}
	now := s.now().UnixNano()
	s.accessMu.Lock()
	s.access[key] = now
	full := len(s.access) >= maxPendingAccess
	s.accessMu.Unlock()
	if full {
		signal(s.flushNow)
	}
}

// FlushAccess writes the access times noted since the last flush. It is a
// no-op for an unbounded store.
func (s *Store) FlushAccess(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.accessMu.Lock()
	pending := s.access
	if len(pending) > 0 {
		s.access = make(map[string]int64, len(pending))
	}
	s.accessMu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	s.disk.preallocate()
	if err := s.moveAccess(ctx, pending); err != nil {
		return fmt.Errorf("cache: flush access times: %w", err)
	}
	return nil
}

// accessLoop flushes access times every interval, or sooner when asked,
// until ctx is done.
func (s *Store) accessLoop(ctx context.Context, interval time.Duration) {
	defer s.done.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.flushNow:
		}
		if err := s.FlushAccess(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("flushing access times", zap.Error(err))
		}
	}
}

// signal sends on a 1-buffered channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
