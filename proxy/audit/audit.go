// Package audit is the append-only audit log of modgate: every
// policy change (through the admin API or a hand edit of the file), every
// clearing of fork evidence and the would-be denials of report mode. The
// gate (proxy) and the admin API (proxy/admin) both write to it. It keeps
// its entries in a small Store (the cache) and imports nothing of ours
// above the cache.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modgate/modgate/cache"
)

// Audit actions of policy changes.
const (
	PolicyAdd     = "policy.add"     // a rule was added through the API
	PolicyRemove  = "policy.remove"  // a rule was removed through the API
	PolicyReplace = "policy.replace" // the whole policy was imported
	PolicyReload  = "policy.reload"  // a hand edit of the file took effect
	PolicyInvalid = "policy.invalid" // a hand edit was refused
	// WouldDeny records a denial that report mode let through.
	WouldDeny = "would_deny"
)

// auditPrefix is the cache key prefix of audit entries.
const auditPrefix = "audit/"

// Limits of Log.List.
const (
	DefaultLimit = 100
	MaxLimit     = 10000
)

// Entry is one record of the audit log.
type Entry struct {
	Time time.Time `json:"time"`
	// Who made the change: "token:<first 8 hex digits of the SHA-256 of
	// the token>", "cert:<subject CN>", or "file" for a hand edit.
	Who     string `json:"who"`
	Action  string `json:"action"`
	Subject string `json:"subject,omitempty"` // what was acted on: a rule id, "policy", m@v
	Rule    string `json:"rule,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Before  string `json:"before,omitempty"` // the policy before, as YAML
	After   string `json:"after,omitempty"`  // the policy after, as YAML
	// Count, Until and Examples describe an aggregated would_deny entry:
	// the requests the rule would have refused from Time to Until, and up
	// to maxExamples of their distinct targets (Subject is the first).
	Count    int64     `json:"count,omitempty"`
	Until    time.Time `json:"until,omitzero"`
	Examples []string  `json:"examples,omitempty"`
}

// Store is where the audit log lives. *cache.Store satisfies it. Scan
// calls fn in key order.
type Store interface {
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	Scan(ctx context.Context, prefix string, fn func(key string, e cache.Entry) error) error
}

var _ Store = (*cache.Store)(nil)

// reverseScanner is a Store that can also scan backwards (ScanDesc: keys
// with prefix that sort before end, the last first). With it, a page of
// the log costs O(page) instead of a walk of the whole log. *cache.Store
// is one; a Store without it is scanned forwards.
type reverseScanner interface {
	ScanDesc(ctx context.Context, prefix, end string, fn func(key string, e cache.Entry) error) error
}

var _ reverseScanner = (*cache.Store)(nil)

// Log is an append-only log of entries in a Store, under keys
// "audit/<20-digit Unix nanoseconds>-<6-digit counter>", so that they sort
// by time. It is bounded: entries past the retention's age or size are
// deleted oldest first, and would-be denials are aggregated (WouldDeny).
// It is safe for concurrent use.
type Log struct {
	store   Store
	cfg     Config
	now     func() time.Time
	mu      sync.Mutex
	last    int64
	counter int

	keep retention  // the age and size bounds
	agg  aggregator // open would_deny entries, by rule
}

// New returns the audit log kept in s, with the default bounds. Use one
// Log per store: keys are unique only within one Log.
func New(s Store) *Log {
	return NewWith(Config{Store: s})
}

// Append stores e; a zero Time is set to now.
func (a *Log) Append(ctx context.Context, e Entry) error {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	e.Time = e.Time.UTC()
	_, err := a.put(ctx, a.key(e.Time), e, 0)
	return err
}

// key returns a new key for an entry at t.
func (a *Log) key(t time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := t.UnixNano()
	if n <= a.last { // never reuse a key, even if the clock steps back
		n = a.last
		a.counter++
	} else {
		a.last, a.counter = n, 0
	}
	return fmt.Sprintf("%s%020d-%06d", auditPrefix, n, a.counter)
}

// List returns the newest limit entries, oldest first. A limit of 0 or
// less means DefaultLimit; at most MaxLimit are returned.
func (a *Log) List(ctx context.Context, limit int) ([]Entry, error) {
	entries, _, err := a.ListPage(ctx, limit, "")
	return entries, err
}

// ListPage returns the newest limit entries older than the cursor before
// ("" for the newest of all), oldest first, and the cursor of the page of
// older entries, "" if there are none. Limits are as List's; a malformed
// cursor wraps ErrBadCursor. Would-be denials not yet written are written
// first.
func (a *Log) ListPage(ctx context.Context, limit int, before string) ([]Entry, string, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	end := ""
	if before != "" {
		if !validCursor(before) {
			return nil, "", fmt.Errorf("%w: %q", ErrBadCursor, before)
		}
		end = auditPrefix + before
	}
	if err := a.Flush(ctx); err != nil {
		return nil, "", err
	}
	if rs, ok := a.store.(reverseScanner); ok {
		return listDesc(ctx, rs, limit, end)
	}
	type keyed struct {
		key   string
		entry Entry
	}
	ring := make([]keyed, 0, min(limit, 256))
	start, dropped := 0, false
	err := a.store.Scan(ctx, auditPrefix, func(key string, e cache.Entry) error {
		if end != "" && key >= end {
			return errStopScan
		}
		var entry Entry
		if err := json.Unmarshal(e.Value, &entry); err != nil {
			return fmt.Errorf("audit: entry %s: %w", key, errors.Join(cache.ErrCorrupt, err))
		}
		if len(ring) < limit {
			ring = append(ring, keyed{key, entry})
			return nil
		}
		ring[start], dropped = keyed{key, entry}, true
		start = (start + 1) % limit
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, "", err
	}
	page := slices.Concat(ring[start:], ring[:start])
	entries := make([]Entry, len(page))
	for i, k := range page {
		entries[i] = k.entry
	}
	next := ""
	if dropped {
		next = strings.TrimPrefix(page[0].key, auditPrefix)
	}
	return entries, next, nil
}

// listDesc is ListPage over a reverseScanner: it reads the newest limit
// entries before end, and one more to know whether older ones exist.
func listDesc(ctx context.Context, rs reverseScanner, limit int, end string) ([]Entry, string, error) {
	var entries []Entry
	var keys []string
	more := false
	err := rs.ScanDesc(ctx, auditPrefix, end, func(key string, e cache.Entry) error {
		if len(entries) == limit {
			more = true
			return errStopScan
		}
		var entry Entry
		if err := json.Unmarshal(e.Value, &entry); err != nil {
			return fmt.Errorf("audit: entry %s: %w", key, errors.Join(cache.ErrCorrupt, err))
		}
		entries, keys = append(entries, entry), append(keys, key)
		return nil
	})
	if err != nil && !errors.Is(err, errStopScan) {
		return nil, "", err
	}
	slices.Reverse(entries)
	next := ""
	if more {
		next = strings.TrimPrefix(keys[len(keys)-1], auditPrefix)
	}
	return entries, next, nil
}
