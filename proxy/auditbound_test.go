package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/policy"
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

// TestAuditWouldDenyAggregated runs a report-mode policy against 200
// requests for made-up module paths (no upstream traffic needed): they
// leave one entry for the rule, with the count and a few examples, not
// 200. The next interval starts a new entry.
func TestAuditWouldDenyAggregated(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	clock := &auditClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	audit := NewAuditLogWith(AuditConfig{Store: tg.cache, Now: clock.Now})
	p, err := policy.Parse([]byte("mode: report\nrules:\n  - id: no-made-up\n    action: deny\n    module: made-up.example/*\n    reason: trying a rule\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg.gate.cfg.Policy = func() *policy.Policy { return p }
	tg.gate.cfg.Audit = audit
	for i := range 200 {
		get(t, tg.url, fmt.Sprintf("/made-up.example/m%d/@v/v1.0.0.info", i))
		if i%50 == 0 {
			clock.Advance(2 * time.Second)
		}
	}
	entries, err := audit.List(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries after 200 would-be denials of one rule, want 1: %+v", len(entries), entries)
	}
	e := entries[0]
	if e.Action != AuditWouldDeny || e.Rule != "no-made-up" || e.Count != 200 || len(e.Examples) != maxExamples ||
		e.Subject != "made-up.example/m0@v1.0.0" || e.Reason != "trying a rule" || !e.Until.After(e.Time) {
		t.Errorf("aggregated entry %+v", e)
	}
	if n, _ := auditBytes(t, tg.cache); n != 1 {
		t.Errorf("%d entries stored, want 1", n)
	}
	clock.Advance(DefaultAuditInterval)
	get(t, tg.url, "/made-up.example/later/@v/v1.0.0.info")
	entries, _ = audit.List(t.Context(), 0)
	if len(entries) != 2 || entries[1].Count != 1 || entries[1].Subject != "made-up.example/later@v1.0.0" || entries[0].Count != 200 {
		t.Errorf("entries after the interval: %+v", entries)
	}
}

// TestAuditRetention fills the log past its size bound and ages it past
// its age bound: the oldest entries go, the newest stay, the bound holds.
func TestAuditRetention(t *testing.T) {
	ctx := t.Context()
	c := openAuditCache(t)
	clock := &auditClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	const maxBytes = 20 << 10
	log := NewAuditLogWith(AuditConfig{Store: c, MaxBytes: maxBytes, MaxAge: 24 * time.Hour, Now: clock.Now})
	reason := strings.Repeat("r", 200)
	for i := range 500 {
		if err := log.Append(ctx, AuditEntry{Who: "file", Action: AuditReload, Subject: fmt.Sprint("e", i), Reason: reason}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Millisecond)
		if _, size := auditBytes(t, c); size > maxBytes {
			t.Fatalf("after %d appends the log holds %d bytes, over its bound %d", i+1, size, maxBytes)
		}
	}
	n, _ := auditBytes(t, c)
	entries, err := log.List(ctx, MaxAuditLimit)
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 || len(entries) != n || entries[len(entries)-1].Subject != "e499" || entries[0].Subject == "e0" {
		t.Errorf("kept %d entries (%d listed), from %s to %s", n, len(entries), entries[0].Subject, entries[len(entries)-1].Subject)
	}
	// A day later, one more entry: every older one is past the age bound.
	clock.Advance(25 * time.Hour)
	if err := log.Append(ctx, AuditEntry{Who: "file", Action: AuditReload, Subject: "new"}); err != nil {
		t.Fatal(err)
	}
	if entries, _ := log.List(ctx, 0); len(entries) != 1 || entries[0].Subject != "new" {
		t.Errorf("after the age bound: %d entries", len(entries))
	}
	// A new AuditLog over the same store measures it first.
	log2 := NewAuditLogWith(AuditConfig{Store: c, MaxBytes: 1, Now: clock.Now})
	if err := log2.Append(ctx, AuditEntry{Who: "file", Action: AuditReload, Subject: "alone"}); err != nil {
		t.Fatal(err)
	}
	if n, _ := auditBytes(t, c); n != 0 {
		t.Errorf("a 1-byte bound kept %d entries", n)
	}
}

// TestAuditPages pages through the log with the admin API's cursor.
func TestAuditPages(t *testing.T) {
	f := newAdminFixture(t, nil)
	for i := range 25 {
		if err := f.audit.Append(t.Context(), AuditEntry{Who: "file", Action: AuditReload, Subject: fmt.Sprint("e", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	before, pages := "", 0
	for {
		var page AuditPage
		path := "/api/v1/audit?limit=10"
		if before != "" {
			path += "&before=" + before
		}
		if code := f.call(t, adminTestToken, "GET", path, "", "", &page); code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, code)
		}
		pages++
		var subjects []string
		for _, e := range page.Entries {
			subjects = append(subjects, e.Subject)
		}
		got = append(subjects, got...)
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		before = page.Next
	}
	want := make([]string, 25)
	for i := range want {
		want[i] = fmt.Sprint("e", i)
	}
	if pages != 3 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%d pages: %v", pages, got)
	}
	var e APIError
	if code := f.call(t, adminTestToken, "GET", "/api/v1/audit?before=nope", "", "", &e); code != http.StatusBadRequest || e.Field != "before" {
		t.Errorf("a bad cursor: %d %+v", code, e)
	}
	b, _ := json.Marshal(AuditPage{Entries: []AuditEntry{}})
	if !strings.Contains(string(b), `"entries":[]`) {
		t.Errorf("empty page %s", b)
	}
}
