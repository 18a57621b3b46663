package proxy

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/audit"
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

// auditEntries counts the stored audit entries.
func auditEntries(t *testing.T, c *cache.Store) int {
	t.Helper()
	n := 0
	if err := c.Scan(t.Context(), "audit/", func(string, cache.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuditWouldDenyAggregated runs a report-mode policy against 200
// requests for made-up module paths (no upstream traffic needed): they
// leave one entry for the rule, with the count and a few examples, not
// 200. The next interval starts a new entry.
func TestAuditWouldDenyAggregated(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	clock := &auditClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	auditLog := audit.NewWith(audit.Config{Store: tg.cache, Now: clock.Now})
	p, err := policy.Parse([]byte("mode: report\nrules:\n  - id: no-made-up\n    action: deny\n    module: made-up.example/*\n    reason: trying a rule\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg.gate.cfg.Policy = func() *policy.Policy { return p }
	tg.gate.cfg.Audit = auditLog
	for i := range 200 {
		get(t, tg.url, fmt.Sprintf("/made-up.example/m%d/@v/v1.0.0.info", i))
		if i%50 == 0 {
			clock.Advance(2 * time.Second)
		}
	}
	entries, err := auditLog.List(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries after 200 would-be denials of one rule, want 1: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Action != audit.WouldDeny || e.Rule != "no-made-up" || e.Count != 200 || len(e.Examples) != 10 ||
		e.Subject != "made-up.example/m0@v1.0.0" || e.Reason != "trying a rule" || !e.Until.After(e.Time) {
		t.Errorf("aggregated entry %+v", e)
	}
	if n := auditEntries(t, tg.cache); n != 1 {
		t.Errorf("%d entries stored, want 1", n)
	}
	clock.Advance(audit.DefaultInterval)
	get(t, tg.url, "/made-up.example/later/@v/v1.0.0.info")
	entries, _ = auditLog.List(t.Context(), 0)
	if len(entries) != 2 || entries[1].Count != 1 || entries[1].Subject != "made-up.example/later@v1.0.0" || entries[0].Count != 200 {
		t.Errorf("entries after the interval: %+v", entries)
	}
}
