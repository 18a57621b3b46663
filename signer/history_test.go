package signer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
)

// clock is a settable time for witness tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func (f *fixture) open(t *testing.T, c *clock) *Witness {
	t.Helper()
	w, err := New(context.Background(), Config{Upstream: f.upstreamKey, Signer: f.signer, Store: f.store, Remote: f.db, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// appendUpstream appends the records of ms to the upstream database
// without the witness seeing them.
func appendUpstream(t *testing.T, db *fakeDB, ms ...module.Version) {
	t.Helper()
	for _, m := range ms {
		if _, err := db.ReadRemote(context.Background(), "/lookup/"+m.Path+"@"+m.Version); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHistoryDatesRecordsByWitnessedHeads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	w := f.open(t, c)
	m := mods(8)
	t0 := c.now()
	appendUpstream(t, f.db, m[0], m[1], m[2]) // records 0-2: before the witness's first head
	if _, _, err := w.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	c.add(10 * time.Minute)
	t1 := c.now()
	if _, err := w.Lookup(ctx, m[3]); err != nil { // record 3, its head seen through the lookup
		t.Fatal(err)
	}
	c.add(10 * time.Minute)
	appendUpstream(t, f.db, m[4]) // record 4: appended with no client asking
	c.add(5 * time.Minute)
	if _, _, err := w.Latest(ctx); err != nil { // the poll
		t.Fatal(err)
	}
	c.add(10 * time.Second)
	appendUpstream(t, f.db, m[5])
	t3 := c.now()
	if _, _, err := w.Latest(ctx); err != nil { // same minute: replaces the last entry
		t.Fatal(err)
	}

	check := func(t *testing.T, w *Witness) {
		t.Helper()
		tests := []struct {
			name  string
			index int64
			ok    bool
			at    time.Time
			size  int64
		}{
			{"before the first head", 0, false, time.Time{}, 0},
			{"last record before the first head", 2, false, time.Time{}, 0},
			{"appended after the first head, seen by a lookup", 3, true, t1, 4},
			{"appended between polls, dated by the later head", 4, true, t3, 6},
			{"same minute: dated by the newer head", 5, true, t3, 6},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				at, size, ok := w.FirstSeen(tt.index)
				if ok != tt.ok || !at.Equal(tt.at) || size != tt.size {
					t.Errorf("FirstSeen(%d) = %v, %d, %v; want %v, %d, %v", tt.index, at, size, ok, tt.at, tt.size, tt.ok)
				}
			})
		}
		h := w.History()
		if h == nil || h.First.Size != 3 || !h.First.Time.Equal(t0) || h.Latest.Size != 6 || h.Entries != 3 {
			t.Errorf("History() = %+v; want first 3 at %v, latest 6, 3 entries", h, t0)
		}
	}
	t.Run("running", func(t *testing.T) { check(t, w) })
	t.Run("after a restart", func(t *testing.T) { check(t, f.open(t, c)) })

	// A record the witness verified but has not recorded yet is seen now.
	if at, size, ok := w.FirstSeen(100); !ok || !at.Equal(c.now()) || size != 101 {
		t.Errorf("FirstSeen beyond the history = %v, %d, %v; want now", at, size, ok)
	}
	st, err := ReadStatus(ctx, f.store, "sum.golang.org")
	if err != nil || st.History == nil || st.History.Entries != 3 || st.History.Latest.Size != 6 {
		t.Errorf("ReadStatus of the stopped witness: history %+v, %v", st.History, err)
	}
}

func TestHistoryForkNeitherMovesNorRewrites(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	w := f.open(t, c)
	m := mods(6)
	appendUpstream(t, f.db, m[0], m[1])
	if _, _, err := w.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	c.add(time.Hour)
	appendUpstream(t, f.db, m[2])
	if _, _, err := w.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	before := *w.History()
	beforeKeys := f.store.Keys(historyKeyPrefix("sum.golang.org"))

	c.add(time.Hour)
	f.db.fork(t, m...) // a longer tree under the same key that does not extend the witnessed one
	if _, _, err := w.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("Latest on a forked upstream: %v, want ErrFork", err)
	}
	if got := *w.History(); got != before {
		t.Errorf("history after the fork = %+v; want it unchanged %+v", got, before)
	}
	if got := w.History(); got.Latest.Size != 3 {
		t.Errorf("the fork moved the history to size %d", got.Latest.Size)
	}
	if at, _, _ := w.FirstSeen(2); !at.Equal(before.Latest.Time) {
		t.Errorf("record 2 dated %v after the fork, want %v", at, before.Latest.Time)
	}
	if got := f.store.Keys(historyKeyPrefix("sum.golang.org")); len(got) != len(beforeKeys) {
		t.Errorf("stored history keys %v, want %v", got, beforeKeys)
	}
	if got := *f.open(t, c).History(); got != before {
		t.Errorf("history after the fork and a restart = %+v; want %+v", got, before)
	}
}

func TestHistorySeedsFromAnExistingWitnessState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	c := &clock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	appendUpstream(t, f.db, mods(4)...)
	if _, _, err := f.w.Latest(ctx); err != nil { // a witness without a clock
		t.Fatal(err)
	}
	for _, k := range f.store.Keys(historyKeyPrefix("sum.golang.org")) { // as a gate from before the history
		f.store.mu.Lock()
		delete(f.store.m, k)
		f.store.mu.Unlock()
	}
	w := f.open(t, c)
	h := w.History()
	if h == nil || h.First.Size != 4 || !h.First.Time.Equal(c.now()) {
		t.Fatalf("history of an upgraded gate = %+v; want first size 4 at %v", h, c.now())
	}
	if _, _, ok := w.FirstSeen(3); ok {
		t.Errorf("a record of the tree witnessed before the history was dated")
	}
}

func TestHistoryRefusesCorruptState(t *testing.T) {
	good := encodeSegment([]histEntry{{10, 100}, {20, 200}})
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"not a segment", "00000000", []byte("hello")},
		{"size zero", "00000000", encodeSegment([]histEntry{{0, 100}})},
		{"sizes shrink", "00000000", encodeSegment([]histEntry{{20, 100}, {10, 200}})},
		{"entry of another day", "00000001", good},
		{"bad key", "day-one", good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &MemStore{}
			s.Store(context.Background(), historyKeyPrefix("db")+tt.key, tt.value)
			if _, err := loadHistory(context.Background(), s, "db", zap.NewNop(), false); !errors.Is(err, ErrHistory) {
				t.Errorf("loadHistory: %v, want ErrHistory", err)
			}
		})
	}
}

// fillHistory records one head every step from start for d, growing by
// 1000 records a step, and returns the time each head dated its last
// record when it was recorded.
func fillHistory(ctx context.Context, h *history, start time.Time, d, step time.Duration) map[int64]time.Time {
	dated := map[int64]time.Time{}
	size := int64(1000)
	for t := start; t.Before(start.Add(d)); t = t.Add(step) {
		size += 1000
		h.record(ctx, size, t)
		dated[size-1] = t
	}
	return dated
}

func TestHistoryDownsamplesWithAge(t *testing.T) {
	ctx := context.Background()
	s := &MemStore{}
	h, _ := loadHistory(ctx, s, "db", zap.NewNop(), false)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	original := fillHistory(ctx, h, start, 40*24*time.Hour, 5*time.Minute) // polling, no clients
	fine := 30 * 24 * 12                                                   // 30 days of 5-minute polls, and the day in progress at most
	st := h.status()
	if st.Entries > fine+12*24+10*24+1 || st.Entries < fine {
		t.Errorf("%d entries after 40 days, want about %d (5-minute polls) for 30 days and one an hour before", st.Entries, fine+10*24)
	}
	if st.First.Size != 2000 || !st.First.Time.Equal(start) {
		t.Errorf("first entry %+v lost in the downsampling", st.First)
	}
	if st.Bytes > 10<<20 {
		t.Errorf("history of %d bytes, want at most 10 MiB", st.Bytes)
	}
	for index, want := range original {
		if index < st.First.Size {
			continue // in the first head: not datable
		}
		at, _, ok := h.firstSeen(index, time.Time{})
		if !ok || at.Before(want) {
			t.Fatalf("record %d dated %v after downsampling, before %v: it must only move later", index, at, want)
		}
		if at.Sub(want) > HistoryCoarse {
			t.Fatalf("record %d dated %v, more than an hour after %v", index, at, want)
		}
	}
	reloaded, err := loadHistory(ctx, s, "db", zap.NewNop(), false)
	if err != nil {
		t.Fatal(err)
	}
	if *reloaded.status() != *st {
		t.Errorf("reloaded history %+v, want %+v", reloaded.status(), st)
	}
}

func TestPollMovesTheHistoryWithoutClients(t *testing.T) {
	f := newFixture(t)
	appendUpstream(t, f.db, mods(2)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.w.PollOnce(ctx) // at start
	if h := f.w.History(); h == nil || h.Latest.Size != 2 {
		t.Fatalf("history after the poll at start: %+v", h)
	}
	go func() { f.w.Poll(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	wait := func(size int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if h := f.w.History(); h != nil && h.Latest.Size == size {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("history %+v did not reach size %d", f.w.History(), size)
	}
	wait(2)
	appendUpstream(t, f.db, module.Version{Path: "example.com/late", Version: "v1.0.0"})
	wait(3)
	if h := f.w.History(); h.First.Size != 2 {
		t.Errorf("first entry %+v, want size 2", h.First)
	}
}

// BenchmarkFirstSeen dates records over a full-size history: 30 days of
// one head a minute (5-minute polling plus one head per lookup under
// load) and 335 older days at one an hour.
func BenchmarkFirstSeen(b *testing.B) {
	ctx := context.Background()
	h, _ := loadHistory(ctx, &MemStore{}, "db", zap.NewNop(), false)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	start := now.Add(-365 * 24 * time.Hour)
	size := int64(1000)
	for t := start; t.Before(now); t = t.Add(time.Minute) {
		size += 100
		if now.Sub(t) < HistoryFineFor || t.Minute() == 59 {
			h.entries = append(h.entries, histEntry{size, t.UnixNano()})
		}
	}
	h.record(ctx, size+100, now) // persists today's segment, compacts nothing more
	var i int64
	for b.Loop() {
		i = (i*7919 + 104729) % size
		h.firstSeen(i, now)
	}
	st := h.status()
	b.ReportMetric(float64(st.Entries), "entries")
	b.ReportMetric(float64(st.Bytes), "history-bytes")
}

func TestStoredRecord(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m := mods(3)
	appendUpstream(t, f.db, m[0], m[1])
	if _, err := f.w.Lookup(ctx, m[1]); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		m     module.Version
		index int64
		ok    bool
	}{
		{"looked up through the witness", m[1], 1, true},
		{"in the tree, never looked up", m[0], 0, false},
		{"not in the tree", m[2], 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reads := f.db.readCount("/")
			index, ok, err := f.w.StoredRecord(ctx, tt.m)
			if err != nil || ok != tt.ok || index != tt.index {
				t.Errorf("StoredRecord(%v) = %d, %v, %v; want %d, %v", tt.m, index, ok, err, tt.index, tt.ok)
			}
			if f.db.readCount("/") != reads {
				t.Errorf("StoredRecord asked the upstream")
			}
		})
	}
}
