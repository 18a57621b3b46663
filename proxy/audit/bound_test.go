package audit

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
)

// auditClock is a settable clock for audit logs.
type auditClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *auditClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *auditClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// auditBytes returns the count and size (keys and values) of the stored
// audit entries.
func auditBytes(t *testing.T, c *cache.Store) (int, int64) {
	t.Helper()
	n, size := 0, int64(0)
	err := c.Scan(t.Context(), auditPrefix, func(k string, e cache.Entry) error {
		n++
		size += int64(len(k) + len(e.Value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

// TestAuditRetention fills the log past its size bound and ages it past
// its age bound: the oldest entries go, the newest stay, the bound holds.
func TestAuditRetention(t *testing.T) {
	ctx := t.Context()
	c := openAuditCache(t)
	clock := &auditClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	const maxBytes = 20 << 10
	log := NewWith(Config{Store: c, MaxBytes: maxBytes, MaxAge: 24 * time.Hour, Now: clock.Now})
	reason := strings.Repeat("r", 200)
	for i := range 500 {
		if err := log.Append(ctx, Entry{Who: "file", Action: PolicyReload, Subject: fmt.Sprint("e", i), Reason: reason}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Millisecond)
		if _, size := auditBytes(t, c); size > maxBytes {
			t.Fatalf("after %d appends the log holds %d bytes, over its bound %d", i+1, size, maxBytes)
		}
	}
	n, _ := auditBytes(t, c)
	entries, err := log.List(ctx, MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 || len(entries) != n || entries[len(entries)-1].Subject != "e499" || entries[0].Subject == "e0" {
		t.Errorf("kept %d entries (%d listed), from %s to %s", n, len(entries), entries[0].Subject, entries[len(entries)-1].Subject)
	}
	// A day later, one more entry: every older one is past the age bound.
	clock.Advance(25 * time.Hour)
	if err := log.Append(ctx, Entry{Who: "file", Action: PolicyReload, Subject: "new"}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := log.List(ctx, 0); len(entries) != 1 || entries[0].Subject != "new" {
		t.Errorf("after the age bound: %d entries", len(entries))
	}
	// A new AuditLog over the same store measures it first.
	log2 := NewWith(Config{Store: c, MaxBytes: 1, Now: clock.Now})
	if err := log2.Append(ctx, Entry{Who: "file", Action: PolicyReload, Subject: "alone"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := auditBytes(t, c); n != 0 {
		t.Errorf("a 1-byte bound kept %d entries", n)
	}
}
