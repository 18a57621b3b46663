package cluster

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLeasesOneHolderAtATime(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	a := NewLeases(db, LeasesConfig{Holder: "gate-a"})
	b := NewLeases(db, LeasesConfig{Holder: "gate-b"})
	const key = "zip/example.com/m/@v/v1.0.0"
	release, _, err := a.TryAcquire(ctx, key)
	if err != nil || release == nil {
		t.Fatalf("first TryAcquire: release=%v err=%v", release != nil, err)
	}
	rb, holder, err := b.TryAcquire(ctx, key)
	if err != nil || rb != nil || holder != "gate-a" {
		t.Fatalf("second TryAcquire while held: release=%v holder=%q err=%v, want none, gate-a", rb != nil, holder, err)
	}
	if r, _, err := b.TryAcquire(ctx, "zip/example.com/other/@v/v1.0.0"); err != nil || r == nil {
		t.Fatalf("a lease on another key: %v", err)
	} else {
		r()
	}
	release()
	release() // a second call does nothing
	rb, _, err = b.TryAcquire(ctx, key)
	if err != nil || rb == nil {
		t.Fatalf("TryAcquire after release: %v", err)
	}
	rb()
}

func TestLeasesRenewedWhileHeld(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	a := NewLeases(db, LeasesConfig{Holder: "a", TTL: ttl})
	b := NewLeases(db, LeasesConfig{Holder: "b", TTL: ttl})
	const key = "mod/example.com/m/@v/v1.0.0"
	release, _, err := a.TryAcquire(ctx, key)
	if err != nil || release == nil {
		t.Fatal(err)
	}
	defer release()
	for deadline := time.Now().Add(4 * ttl); time.Now().Before(deadline); time.Sleep(ttl / 4) {
		if r, _, err := b.TryAcquire(ctx, key); err != nil || r != nil {
			t.Fatalf("took a lease its holder renews (err %v)", err)
		}
	}
}

func TestLeasesOfADeadGateExpire(t *testing.T) {
	db, url := openTestDB(t)
	ctx := context.Background()
	ttl := time.Second
	// The dying gate has its own pool: closing it ends the renewals as a
	// SIGKILL would, and nothing releases the lease.
	dying, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	const key = "zip/example.com/m/@v/v1.0.0"
	release, _, err := NewLeases(dying, LeasesConfig{Holder: "dying", TTL: ttl}).TryAcquire(ctx, key)
	if err != nil || release == nil {
		t.Fatal(err)
	}
	died := time.Now()
	dying.Close()
	b := NewLeases(db, LeasesConfig{Holder: "b", TTL: ttl})
	for {
		r, holder, err := b.TryAcquire(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			r()
			break
		}
		if holder != "dying" {
			t.Fatalf("holder %q, want dying", holder)
		}
		if time.Since(died) > ttl+2*time.Second {
			t.Fatalf("the dead gate's lease still blocks %v after it died (TTL %v)", time.Since(died), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if waited := time.Since(died); waited < ttl/2 {
		t.Fatalf("took the lease %v after its holder died, before its TTL %v", waited, ttl)
	}
}

func TestLeasesConcurrentTakersOneWins(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	gates := []*Leases{
		NewLeases(db, LeasesConfig{Holder: "1"}), NewLeases(db, LeasesConfig{Holder: "2"}),
		NewLeases(db, LeasesConfig{Holder: "3"}),
	}
	const key = "zip/example.com/m/@v/v1.0.0"
	var won atomic.Int32
	var mu sync.Mutex
	var releases []func()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			r, _, err := gates[i%3].TryAcquire(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			if r != nil {
				won.Add(1)
				mu.Lock()
				releases = append(releases, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, r := range releases {
		r()
	}
	if won.Load() != 1 {
		t.Fatalf("%d takers got the lease, want 1", won.Load())
	}
}
