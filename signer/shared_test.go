package signer

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// sharedPair returns two witnesses (two gates) on one shared store.
func sharedPair(t *testing.T) (*fixture, *Witness, *Witness) {
	t.Helper()
	f := newFixture(t)
	return f, openShared(t, f, nil), openShared(t, f, nil)
}

// openShared opens another witness on f's store, shared; now may be nil.
func openShared(t *testing.T, f *fixture, now func() time.Time) *Witness {
	t.Helper()
	w, err := New(context.Background(), Config{Upstream: f.upstreamKey, Signer: f.signer, Store: f.store,
		Remote: f.db, Shared: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestSharedForkClosesAndClearOpensEveryWitness: a fork seen by one of two
// witnesses on a shared store closes the other once it syncs, even for a
// record it verified before; when another sees it too, the evidence is
// recorded once; a clear-fork on one opens the other; a new fork after
// the clear is recorded again.
func TestSharedForkClosesAndClearOpensEveryWitness(t *testing.T) {
	ctx := context.Background()
	f, a, b := sharedPair(t)
	for _, m := range mods(20) {
		if _, err := a.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Lookup(ctx, mods(1)[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx); err != nil || b.TreeSize() != a.TreeSize() {
		t.Fatalf("after Sync b has tree %d, a %d (%v)", b.TreeSize(), a.TreeSize(), err)
	}
	f.db.fork(t, mods(25)...)
	if _, _, err := a.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("a.Latest after the fork: %v", err)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.Forked() {
		t.Fatal("b does not fail closed after a recorded the fork")
	}
	if _, err := b.Lookup(ctx, mods(1)[0]); !errors.Is(err, ErrFork) {
		t.Errorf("b's lookup of a record verified before: %v, want ErrFork", err)
	}
	// A third witness that has not synced detects the fork itself, and
	// does not record it again.
	c := openShared(t, f, nil)
	c.forked.Store(false)
	if _, _, err := c.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("c.Latest: %v", err)
	}
	if ev, _ := a.Evidence(ctx); len(ev) != 1 {
		t.Fatalf("%d pieces of evidence, want 1", len(ev))
	}
	f.db.unfork()
	if _, err := b.ClearFork(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil || a.Forked() {
		t.Fatalf("a after b's clear-fork: forked %v, %v", a.Forked(), err)
	}
	if _, _, err := a.Latest(ctx); err != nil {
		t.Fatalf("a.Latest after the clear-fork: %v", err)
	}
	f.db.fork(t, mods(30)...) // a new fork after a clear is recorded again
	if _, _, err := b.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("b.Latest after a second fork: %v", err)
	}
	if ev, _ := a.Evidence(ctx); len(ev) != 1 {
		t.Fatalf("%d pieces of open evidence after the second fork, want 1", len(ev))
	}
}

// TestSharedConcurrentForkRecordedOnce: many witnesses that see one fork
// at once record its evidence once.
func TestSharedConcurrentForkRecordedOnce(t *testing.T) {
	ctx := context.Background()
	f, a, _ := sharedPair(t)
	for _, m := range mods(10) {
		if _, err := a.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var ws []*Witness
	for range 8 {
		ws = append(ws, openShared(t, f, nil))
	}
	f.db.fork(t, mods(12)...)
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() { w.Latest(ctx) })
	}
	wg.Wait()
	for i, w := range ws {
		if !w.Forked() {
			t.Errorf("witness %d does not fail closed", i)
		}
	}
	if ev, _ := a.Evidence(ctx); len(ev) != 1 {
		t.Fatalf("%d pieces of evidence, want 1", len(ev))
	}
}

// TestSharedCoSignedHeadAndHistory: the newest co-signed head never moves
// back when a witness with an older view co-signs, and the history holds
// the heads that either witness accepted.
func TestSharedCoSignedHeadAndHistory(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := newFixture(t)
	clock := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
	a, b := openShared(t, f, clock(0)), openShared(t, f, clock(2*time.Hour))
	if _, err := a.Lookup(ctx, mods(1)[0]); err != nil {
		t.Fatal(err)
	}
	for _, m := range mods(3) {
		if _, err := b.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	three, _, err := b.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods(5) {
		if _, err := b.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := b.Latest(ctx); err != nil {
		t.Fatal(err)
	}
	// a has co-signed nothing yet: co-signing the older head of size 3
	// must not move the stored newest co-signed head back from 5.
	text, _, _ := strings.Cut(string(three), "\n\n")
	if _, _, err := a.CoSign(ctx, []byte(text+"\n\n"+upstreamSig(three, f.upstreamKey))); err != nil {
		t.Fatal(err)
	}
	h, err := readHead(ctx, f.store, "sum.golang.org")
	if err != nil || h == nil || h.Size != 5 {
		t.Fatalf("stored co-signed head %+v, %v; want size 5", h, err)
	}
	st, err := ReadHistory(ctx, f.store, "sum.golang.org")
	if err != nil || st.First.Size != 1 || st.Latest.Size != 5 {
		t.Fatalf("stored history %+v, %v; want from size 1 to 5", st, err)
	}
	if err := a.Sync(ctx); err != nil || a.History().Latest.Size != 5 {
		t.Fatalf("a's history after Sync: %+v, %v", a.History(), err)
	}
}

// upstreamSig returns the signature line of a co-signed note made by
// the key named in the verifier key vkey.
func upstreamSig(msg []byte, vkey string) string {
	_, sigs, _ := strings.Cut(string(msg), "\n\n")
	hash := strings.Split(vkey, "+")[1]
	for _, line := range strings.SplitAfter(sigs, "\n") {
		if strings.Contains(line, "sum.golang.org ") && sigHash(line) == hash {
			return line
		}
	}
	return ""
}

// sigHash returns the key hash of a signature line, in hex.
func sigHash(line string) string {
	f := strings.Fields(line)
	b, err := base64.StdEncoding.DecodeString(f[len(f)-1])
	if err != nil || len(b) < 4 {
		return ""
	}
	return hex.EncodeToString(b[:4])
}

func TestMergeHistory(t *testing.T) {
	tests := []struct {
		name string
		a, b []histEntry
		want []histEntry
	}{
		{"disjoint", []histEntry{{1, 10}, {5, 50}}, []histEntry{{3, 30}}, []histEntry{{1, 10}, {3, 30}, {5, 50}}},
		{"same size: the earlier time", []histEntry{{3, 30}}, []histEntry{{3, 20}}, []histEntry{{3, 20}}},
		{"a larger tree seen earlier dominates", []histEntry{{1, 10}, {5, 50}}, []histEntry{{7, 40}},
			[]histEntry{{1, 10}, {7, 40}}},
		{"same time: the larger tree", []histEntry{{1, 10}, {5, 50}}, []histEntry{{7, 50}},
			[]histEntry{{1, 10}, {7, 50}}},
		{"empty", nil, nil, []histEntry{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mergeHistory(tt.a, tt.b); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSharedHistoryAcrossMidnight: two gates record heads after the
// fact, so a larger tree may be dated on the day before a smaller one.
// A shared store's history loads, merged, where a gate's own would be
// refused.
func TestSharedHistoryAcrossMidnight(t *testing.T) {
	ctx := context.Background()
	s := &MemStore{}
	day := int64(20000)
	at := func(d int64, off time.Duration) int64 { return d*int64(historyDay) + int64(off) }
	h := &history{prefix: historyKeyPrefix("db")}
	s.Store(ctx, h.dayKey(day), encodeSegment([]histEntry{{10, at(day, time.Hour)}, {120, at(day+1, -time.Millisecond)}}))
	s.Store(ctx, h.dayKey(day+1),
		encodeSegment([]histEntry{{110, at(day+1, time.Millisecond)}, {130, at(day+1, time.Hour)}}))
	if _, err := loadHistory(ctx, s, "db", zap.NewNop(), false); !errors.Is(err, ErrHistory) {
		t.Fatalf("a gate's own history: %v, want ErrHistory", err)
	}
	got, err := loadHistory(ctx, s, "db", zap.NewNop(), true)
	if err != nil {
		t.Fatal(err)
	}
	want := []histEntry{{10, at(day, time.Hour)}, {120, at(day+1, -time.Millisecond)}, {130, at(day+1, time.Hour)}}
	if fmt.Sprint(got.entries) != fmt.Sprint(want) {
		t.Fatalf("merged %v, want %v", got.entries, want)
	}
}
