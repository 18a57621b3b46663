package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/pgtest"
)

// TestWitnessStore runs the witness store's tests on one PostgreSQL server.
func TestWitnessStore(t *testing.T) {
	srv := pgtest.Start(t)
	for _, tt := range []struct {
		name string
		run  func(*testing.T, *pgtest.Server)
	}{
		{"contract", testWitnessStoreContract},
		{"scan", testWitnessStoreScan},
		{"swap is atomic", testWitnessStoreSwapIsAtomic},
		{"watch", testWatchAnnouncesWitnessChanges},
	} {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, srv) })
	}
}

// openTest opens a fresh database on srv.
func openTest(t *testing.T, srv *pgtest.Server) *DB {
	t.Helper()
	db, err := Open(context.Background(), srv.NewDatabase(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// testWitnessStoreContract checks the witness's Store contract, step by
// step, on one database.
func testWitnessStoreContract(t *testing.T, srv *pgtest.Server) {
	s := WitnessStore{DB: openTest(t, srv)}
	ctx := context.Background()
	type step struct {
		name string
		run  func() (any, error)
		want any
	}
	load := func(k string) func() (any, error) {
		return func() (any, error) { v, err := s.Load(ctx, k); return v, err }
	}
	swap := func(k string, old, new []byte) func() (any, error) {
		return func() (any, error) { return s.Swap(ctx, k, old, new) }
	}
	store := func(k string, v []byte) func() (any, error) {
		return func() (any, error) { return nil, s.Store(ctx, k, v) }
	}
	steps := []step{
		{"absent loads nil", load("witness/a"), []byte(nil)},
		{"swap from absent", swap("witness/a", nil, []byte("1")), true},
		{"swap from absent again loses", swap("witness/a", nil, []byte("2")), false},
		{"swap from a stale value loses", swap("witness/a", []byte("0"), []byte("2")), false},
		{"swap from the value wins", swap("witness/a", []byte("1"), []byte("2")), true},
		{"load the swapped value", load("witness/a"), []byte("2")},
		{"swap on an absent key with old loses", swap("witness/none", []byte("1"), []byte("2")), false},
		{"store", store("sumdb/x", []byte("v")), nil},
		{"overwrite", store("sumdb/x", []byte("w")), nil},
		{"load", load("sumdb/x"), []byte("w")},
		{"store an empty value", store("sumdb/empty", nil), nil},
		{"an empty value is present", load("sumdb/empty"), []byte{}},
		{"delete", func() (any, error) { return nil, s.Delete(ctx, "sumdb/x") }, nil},
		{"deleted loads nil", load("sumdb/x"), []byte(nil)},
		{"delete absent", func() (any, error) { return nil, s.Delete(ctx, "sumdb/x") }, nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := st.run()
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", st.want) {
				t.Fatalf("got %#v, want %#v", got, st.want)
			}
		})
	}
}

// testWitnessStoreScan: a Scan returns the keys with the prefix, and only
// those, in bytewise order, with LIKE's wildcards taken literally.
func testWitnessStoreScan(t *testing.T, srv *pgtest.Server) {
	s := WitnessStore{DB: openTest(t, srv)}
	ctx := context.Background()
	keys := []string{"p/b", "p/a", "p/B", "p/_x", "p/%y", "p0", "q/a", "p/a/1", "p"}
	for _, k := range keys {
		if err := s.Store(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"p/", []string{"p/%y", "p/B", "p/_x", "p/a", "p/a/1", "p/b"}},
		{"p/_", []string{"p/_x"}},
		{"p/%", []string{"p/%y"}},
		{"q/", []string{"q/a"}},
		{"r/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			var got []string
			err := s.Scan(ctx, tt.prefix, func(k string, v []byte) error {
				if string(v) != k {
					t.Errorf("value of %s is %q", k, v)
				}
				got = append(got, k)
				return nil
			})
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Scan(%q) = %q, %v; want %q", tt.prefix, got, err, tt.want)
			}
		})
	}
}

// testWitnessStoreSwapIsAtomic: of many gates (connections) swapping from
// one value at once, exactly one wins.
func testWitnessStoreSwapIsAtomic(t *testing.T, srv *pgtest.Server) {
	url := srv.NewDatabase(t)
	ctx := context.Background()
	var stores []WitnessStore
	for range 3 {
		db, err := Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		stores = append(stores, WitnessStore{DB: db})
	}
	if err := stores[0].Store(ctx, "witness/state", []byte("0")); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		old := []byte(fmt.Sprint(round))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				ok, err := stores[i%3].Swap(ctx, "witness/state", old, fmt.Appendf(nil, "%d", round+1))
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d swaps won, want 1", round, wins.Load())
		}
	}
}

// testWatchAnnouncesWitnessChanges: a change of a key under witness/ is
// announced to every watcher, with the key; a change under sumdb/ is not.
func testWatchAnnouncesWitnessChanges(t *testing.T, srv *pgtest.Server) {
	db := openTest(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 16)
	go db.Watch(ctx, WitnessChannel, time.Hour, func(_ context.Context, p string) { got <- p })
	if p := <-got; p != "" {
		t.Fatalf("first call %q, want the initial read", p)
	}
	s := WitnessStore{DB: db}
	time.Sleep(200 * time.Millisecond) // LISTEN runs after the initial read
	for _, k := range []string{"sumdb/tile", "witness/sum.golang.org/fork"} {
		if err := s.Store(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for p := range got {
		if p == "" {
			continue // the read after LISTEN holds
		}
		if p != "witness/sum.golang.org/fork" {
			t.Fatalf("notified %q", p)
		}
		break
	}
}
