package audit

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
)

// forwardStore hides every method of a Store but the three of the
// interface: no ScanDesc, no Stats.
type forwardStore struct{ Store }

// countingStore counts the entries its scans hand out.
type countingStore struct {
	*cache.Store
	read atomic.Int64
}

func (c *countingStore) Scan(ctx context.Context, prefix string, fn func(string, cache.Entry) error) error {
	return c.Store.Scan(ctx, prefix, func(k string, e cache.Entry) error { c.read.Add(1); return fn(k, e) })
}

func (c *countingStore) ScanDesc(ctx context.Context, prefix, end string, fn func(string, cache.Entry) error) error {
	return c.Store.ScanDesc(ctx, prefix, end, func(k string, e cache.Entry) error { c.read.Add(1); return fn(k, e) })
}

// TestLogReadsWhatItNeeds checks that a page of the log, and the
// retention's checks, read the entries they need and not the whole log,
// and that paging backwards gives what a forward walk gives.
func TestLogReadsWhatItNeeds(t *testing.T) {
	ctx := t.Context()
	c := &countingStore{Store: openAuditCache(t)}
	clock := &auditClock{t: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}
	log := NewWith(Config{Store: c, MaxAge: time.Hour, Now: clock.Now})
	const n = 1000
	for i := range n {
		if err := log.Append(ctx, Entry{Who: "file", Action: PolicyReload, Subject: fmt.Sprint("e", i)}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second) // 1000 s: the first 400 or so age out an hour later
	}
	t.Run("appends", func(t *testing.T) {
		// An age check a minute, each reading the oldest entry only.
		if got, checks := c.read.Load(), int64(n/60+1); got > checks {
			t.Errorf("%d appends read %d entries, want at most %d (one per age check)", n, got, checks)
		}
	})
	t.Run("a page", func(t *testing.T) {
		c.read.Store(0)
		page, next, err := log.ListPage(ctx, 10, "")
		if err != nil || len(page) != 10 || page[9].Subject != "e999" || next == "" {
			t.Fatalf("ListPage = %d entries (last %v), next %q, %v", len(page), page[len(page)-1], next, err)
		}
		if got := c.read.Load(); got > 11 {
			t.Errorf("a page of 10 read %d entries, want at most 11", got)
		}
	})
	t.Run("paging matches a forward walk", func(t *testing.T) {
		fw := NewWith(Config{Store: forwardStore{c.Store}, MaxAge: time.Hour, Now: clock.Now})
		for _, before := range []string{"", "x"} {
			if before == "x" {
				_, before, _ = log.ListPage(ctx, 333, "")
			}
			for {
				got, gotNext, err := log.ListPage(ctx, 100, before)
				if err != nil {
					t.Fatal(err)
				}
				want, wantNext, err := fw.ListPage(ctx, 100, before)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) || gotNext != wantNext {
					t.Fatalf("page before %q: %d entries next %q, forward %d entries next %q",
						before, len(got), gotNext, len(want), wantNext)
				}
				if before = gotNext; before == "" {
					break
				}
			}
		}
	})
	t.Run("aging out reads the old entries and one more", func(t *testing.T) {
		clock.Advance(time.Hour - 600*time.Second) // entries e0..e399 are now over an hour old
		c.read.Store(0)
		if err := log.Append(ctx, Entry{Who: "file", Action: PolicyReload, Subject: "late"}); err != nil {
			t.Fatal(err)
		}
		if got := c.read.Load(); got < 399 || got > 402 {
			t.Errorf("the age check read %d entries, want about 400 (those it deleted, and the first it kept)", got)
		}
		page, _, err := log.ListPage(ctx, MaxLimit, "")
		if err != nil || len(page) < 599 || len(page) > 602 || page[len(page)-1].Subject != "late" {
			t.Errorf("after aging out: %d entries, %v", len(page), err)
		}
	})
}
