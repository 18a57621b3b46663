package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/cache"
)

// Defaults of Config.
const (
	DefaultMaxAge   = 180 * 24 * time.Hour
	DefaultMaxBytes = 64 << 20
	DefaultInterval = time.Hour
)

// maxExamples is how many distinct targets an aggregated would_deny entry
// names.
const maxExamples = 10

// flushEvery is how often an open would_deny entry is written again
// while its rule keeps matching: its count lags by at most this much
// traffic until ListPage or Flush.
const flushEvery = time.Second

// ageCheckEvery is how often Append looks for entries past MaxAge.
const ageCheckEvery = time.Minute

// ErrBadCursor reports a ListPage cursor that no page returned.
var ErrBadCursor = errors.New("audit: malformed page cursor")

// errStopScan ends a Scan early.
var errStopScan = errors.New("stop scan")

// Config configures an Log. Store is required; the zero values
// of the others mean the defaults.
type Config struct {
	Store Store
	// MaxAge deletes entries older than it. 0 means DefaultMaxAge.
	MaxAge time.Duration
	// MaxBytes bounds the stored entries (keys and values); past it the
	// oldest are deleted down to 90% of it. 0 means DefaultMaxBytes.
	MaxBytes int64
	// Interval is how long the would-be denials of one rule share one
	// entry. 0 means DefaultInterval.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger is nil for zap.NewNop().
	Logger *zap.Logger
	// Shared says that other logs (the gates of a cluster) write to Store
	// too: the log is measured again at every age check (each minute),
	// since what this Log wrote itself is not all it holds.
	Shared bool
}

// NewWith returns the audit log that cfg describes.
func NewWith(cfg Config) *Log {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Log{store: cfg.Store, cfg: cfg, now: cfg.Now}
}

// put stores e under key, replacing an entry of oldSize bytes (0 for a new
// key), enforces the retention and returns the stored size.
func (a *Log) put(ctx context.Context, key string, e Entry, oldSize int64) (int64, error) {
	value, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	if err := a.store.Put(ctx, key, value); err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	size := entrySize(key, value)
	a.keep.grew(size - oldSize)
	if err := a.enforce(ctx); err != nil {
		a.cfg.Logger.Error("audit retention", zap.Error(err))
	}
	return size, nil
}

// retention is the state of the age and size bounds.
type retention struct {
	mu        sync.Mutex
	loaded    bool  // bytes counts what the store holds
	bytes     int64 // of the stored entries, keys and values
	pending   int64 // grown since the last enforce
	lastCheck time.Time
}

func (r *retention) grew(n int64) {
	r.mu.Lock()
	r.pending += n
	r.mu.Unlock()
}

// enforce deletes, oldest first, the entries past MaxAge (looked for at
// most every ageCheckEvery) and, when the log holds over MaxBytes, the
// oldest down to 90% of it. It reads the log from its oldest entry and
// stops at the first one it keeps, so it costs O(entries deleted), not a
// walk of the whole log. The first call measures the log (measure).
func (a *Log) enforce(ctx context.Context) error {
	r := &a.keep
	r.mu.Lock()
	defer r.mu.Unlock()
	now := a.now()
	if !r.loaded || (a.cfg.Shared && now.Sub(r.lastCheck) >= ageCheckEvery) {
		total, err := a.measure(ctx)
		if err != nil {
			return err
		}
		r.loaded, r.bytes = true, total
	} else {
		r.bytes += r.pending
	}
	r.pending = 0
	if r.bytes <= a.cfg.MaxBytes && now.Sub(r.lastCheck) < ageCheckEvery {
		return nil
	}
	r.lastCheck = now
	oldest := now.Add(-a.cfg.MaxAge).UnixNano()
	target := a.cfg.MaxBytes / 10 * 9
	over := r.bytes > a.cfg.MaxBytes
	var drop []string
	err := a.store.Scan(ctx, auditPrefix, func(key string, e cache.Entry) error {
		if keyTime(key) >= oldest && (!over || r.bytes <= target) {
			return errStopScan
		}
		drop = append(drop, key)
		r.bytes -= entrySize(key, e.Value)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return err
	}
	for _, key := range drop {
		if err := a.store.Delete(ctx, key); err != nil {
			return err
		}
	}
	if len(drop) > 0 {
		a.cfg.Logger.Info("audit log pruned", zap.Int("entries", len(drop)), zap.Int64("bytes", r.bytes))
	}
	return nil
}

// entrySize is what an entry counts against MaxBytes: its key and value.
func entrySize(key string, value []byte) int64 { return int64(len(key) + len(value)) }

// keyLen is the length of an entry's key ("audit/" and 27 characters).
const keyLen = len(auditPrefix) + 27

// kindStats is a Store that counts its objects by kind (the key's part
// before the first '/'), as *cache.Store does incrementally.
type kindStats interface {
	Stats(ctx context.Context) (cache.Stats, error)
}

// measure returns the bytes of the stored entries: from the store's
// counts of the "audit" kind when it keeps them (O(1)), else by a walk of
// the log.
func (a *Log) measure(ctx context.Context) (int64, error) {
	if ks, ok := a.store.(kindStats); ok {
		st, err := ks.Stats(ctx)
		if err != nil {
			return 0, err
		}
		k := st.Kinds[strings.TrimSuffix(auditPrefix, "/")]
		return k.Bytes + k.Objects*int64(keyLen), nil
	}
	var total int64
	err := a.store.Scan(ctx, auditPrefix, func(key string, e cache.Entry) error {
		total += entrySize(key, e.Value)
		return nil
	})
	return total, err
}

// keyTime returns the Unix nanoseconds of an entry's key.
func keyTime(key string) int64 {
	rest := key[len(auditPrefix):]
	if len(rest) < 20 {
		return 0
	}
	n, _ := strconv.ParseInt(rest[:20], 10, 64)
	return n
}

// validCursor reports whether c is the suffix of an entry key.
func validCursor(c string) bool {
	if len(c) != 27 || c[20] != '-' {
		return false
	}
	for i, r := range c {
		if i != 20 && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// aggregator keeps, per rule, the would_deny entry of its current
// interval.
type aggregator struct {
	mu   sync.Mutex
	open map[string]*openEntry
}

// openEntry is a would_deny entry still counting.
type openEntry struct {
	key     string
	entry   Entry
	size    int64 // as last written; 0 if never
	written time.Time
	dirty   bool
}

// WouldDeny records that rule would have refused target (report mode).
// The would-be denials of one rule in one Interval share one entry, with
// their count and up to 10 distinct targets, written at the first and
// then at most every second.
func (a *Log) WouldDeny(ctx context.Context, rule, reason, target string) error {
	now := a.now().UTC()
	a.agg.mu.Lock()
	defer a.agg.mu.Unlock()
	if a.agg.open == nil {
		a.agg.open = make(map[string]*openEntry)
	}
	o := a.agg.open[rule]
	if o != nil && (now.Sub(o.entry.Time) >= a.cfg.Interval || now.Before(o.entry.Time)) {
		if err := a.write(ctx, o); err != nil {
			return err
		}
		o = nil
	}
	if o == nil {
		e := Entry{Time: now, Who: "gate", Action: WouldDeny, Subject: target, Rule: rule}
		o = &openEntry{key: a.key(now), entry: e}
		a.agg.open[rule] = o
	}
	o.entry.Count++
	o.entry.Until, o.entry.Reason = now, reason
	if len(o.entry.Examples) < maxExamples && !slices.Contains(o.entry.Examples, target) {
		o.entry.Examples = append(o.entry.Examples, target)
	}
	o.dirty = true
	if o.size == 0 || now.Sub(o.written) >= flushEvery {
		return a.write(ctx, o)
	}
	return nil
}

// Flush writes the counts of would_deny entries not yet written.
func (a *Log) Flush(ctx context.Context) error {
	a.agg.mu.Lock()
	defer a.agg.mu.Unlock()
	var errs []error
	for rule, o := range a.agg.open {
		errs = append(errs, a.write(ctx, o))
		if a.now().Sub(o.entry.Time) >= a.cfg.Interval {
			delete(a.agg.open, rule)
		}
	}
	return errors.Join(errs...)
}

// write stores o if it changed since it was last written.
func (a *Log) write(ctx context.Context, o *openEntry) error {
	if !o.dirty {
		return nil
	}
	size, err := a.put(ctx, o.key, o.entry, o.size)
	if err != nil {
		return err
	}
	o.size, o.written, o.dirty = size, a.now(), false
	return nil
}
