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
}

// Store is where the audit log lives. *cache.Store satisfies it. Scan
// calls fn in key order.
type Store interface {
	Put(ctx context.Context, key string, value []byte) error
	Scan(ctx context.Context, prefix string, fn func(key string, e cache.Entry) error) error
}

var _ Store = (*cache.Store)(nil)

// Log is an append-only log of entries in an Store, under keys
// "audit/<20-digit Unix nanoseconds>-<6-digit counter>", so that they sort
// by time. It is safe for concurrent use.
type Log struct {
	store   Store
	now     func() time.Time
	mu      sync.Mutex
	last    int64
	counter int
}

// New returns the audit log kept in s. Use one Log per
// store: keys are unique only within one Log.
func New(s Store) *Log {
	return &Log{store: s, now: time.Now}
}

// Append stores e; a zero Time is set to now.
func (a *Log) Append(ctx context.Context, e Entry) error {
	if e.Time.IsZero() {
		e.Time = a.now()
	}
	e.Time = e.Time.UTC()
	value, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := a.store.Put(ctx, a.key(e.Time), value); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
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
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	ring := make([]Entry, 0, min(limit, 256))
	start := 0
	err := a.store.Scan(ctx, auditPrefix, func(key string, e cache.Entry) error {
		var entry Entry
		if err := json.Unmarshal(e.Value, &entry); err != nil {
			return fmt.Errorf("audit: entry %s: %w", key, errors.Join(cache.ErrCorrupt, err))
		}
		if len(ring) < limit {
			ring = append(ring, entry)
			return nil
		}
		ring[start] = entry
		start = (start + 1) % limit
		return nil
	})
	if err != nil {
		return nil, err
	}
	return slices.Concat(ring[start:], ring[:start]), nil
}
