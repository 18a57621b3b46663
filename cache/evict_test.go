package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// boundedStore opens an on-disk store of maxSize bytes with manual
// eviction and a settable clock.
func boundedStore(t *testing.T, dir string, maxSize int64, clock *fakeClock) *Store {
	t.Helper()
	return openStore(t, Config{Dir: dir, MaxSize: maxSize, ManualEviction: true, Now: clock.now, GCInterval: -1})
}

// present returns which of keys still hold a small value or a blob.
func present(t *testing.T, s *Store, keys []string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, k := range keys {
		_, err := s.Get(ctx, k)
		hasBlob, berr := s.HasBlob(ctx, k)
		if berr != nil || (err != nil && !errors.Is(err, ErrNotFound)) {
			t.Fatalf("reading %s: %v %v", k, err, berr)
		}
		if err == nil || hasBlob {
			out = append(out, k)
		}
	}
	return out
}

func TestEvictOrder(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		maxSize int64
		read    []string // read after all writes, in this order
		want    []string // what remains
	}{
		{"under the limit evicts nothing", 10_000, nil,
			[]string{"mod/a", "mod/b", "zip/c", "info/d", "sumdb/db/tile/8/0/000"}},
		{"oldest writes go first", 300, nil,
			[]string{"info/d", "sumdb/db/tile/8/0/000"}},
		{"a read makes an object recent", 300, []string{"mod/a", "zip/c"},
			[]string{"mod/a", "zip/c"}},
		{"the last read is the most recent", 300, []string{"zip/c", "mod/b", "mod/a"},
			[]string{"mod/b", "mod/a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: testEpoch}
			s := boundedStore(t, t.TempDir(), tt.maxSize, clock)
			keys := []string{"mod/a", "mod/b", "zip/c", "info/d", "sumdb/db/tile/8/0/000"}
			for _, k := range keys {
				clock.t = clock.t.Add(time.Second)
				var err error
				if k == "zip/c" {
					err = s.PutBlob(ctx, k, bytes.NewReader(pattern(100, 1)), 100)
				} else {
					err = s.Put(ctx, k, pattern(100, 2))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, k := range tt.read {
				clock.t = clock.t.Add(time.Second)
				if k == "zip/c" {
					b, err := s.OpenBlob(ctx, k)
					if err != nil {
						t.Fatal(err)
					}
					b.Close()
				} else if _, err := s.Get(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			st, err := s.Evict(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := present(t, s, keys)
			if !sameSet(got, tt.want) {
				t.Errorf("after Evict: %v remain, want %v (stats %+v)", got, tt.want, st)
			}
			if st.After > tt.maxSize || st.Before != 500 || st.Before-st.After != st.EvictedBytes {
				t.Errorf("stats %+v inconsistent with max size %d", st, tt.maxSize)
			}
			if len(tt.want) < len(keys) && countChunks(t, s) != len(present(t, s, []string{"zip/c"})) {
				t.Errorf("%d chunks left, want those of the remaining blobs only", countChunks(t, s))
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestEvictSparesWitnessState(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, dir, 1000, clock)
	// The protected keys are the oldest and the largest: a plain LRU over
	// every key would evict them first.
	protected := map[string][]byte{
		"witness/sum.golang.org/latest":             pattern(900, 1),
		"witness/sum.golang.org/evidence/000000001": pattern(300, 2),
		"audit/2026-01-02T03:04:05Z":                pattern(300, 3),
		"list/example.com/m/@v/list":                pattern(50, 4),
	}
	for k, v := range protected {
		if err := s.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	var evictable []string
	for i := range 20 {
		clock.t = clock.t.Add(time.Minute)
		k := fmt.Sprintf("mod/example.com/m%02d/@v/v1.0.0.mod", i)
		if err := s.Put(ctx, k, pattern(100, byte(i))); err != nil {
			t.Fatal(err)
		}
		evictable = append(evictable, k)
	}
	st, err := s.Evict(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left := present(t, s, evictable); len(left) != 0 {
		t.Errorf("%d evictable objects left (%v), want none: the protected ones alone pass the limit", len(left), left)
	}
	if st.Evicted != 20 {
		t.Errorf("evicted %d, want 20", st.Evicted)
	}
	s.Close()
	s = boundedStore(t, dir, 1000, clock)
	for k, v := range protected {
		e, err := s.Get(ctx, k)
		if err != nil || !bytes.Equal(e.Value, v) {
			t.Errorf("%s after eviction and reopen: %v", k, err)
		}
	}
}

func TestReadsDoNotWrite(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, t.TempDir(), 1<<20, clock)
	const key = "info/example.com/m/@v/v1.0.0.info"
	if err := s.Put(ctx, key, []byte(`{"Version":"v1.0.0"}`)); err != nil {
		t.Fatal(err)
	}
	written := accessRecord(t, s, key)
	if written != testEpoch.UnixNano() {
		t.Fatalf("access record after Put = %d, want the store time", written)
	}
	for i := range 100 {
		clock.t = testEpoch.Add(time.Duration(i+1) * time.Second)
		if _, err := s.Get(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if got := accessRecord(t, s, key); got != written {
		t.Fatalf("a read wrote the access record before the flush")
	}
	if err := s.FlushAccess(ctx); err != nil {
		t.Fatal(err)
	}
	if got := accessRecord(t, s, key); got != clock.t.UnixNano() {
		t.Errorf("access record after flush = %d, want the last read %d", got, clock.t.UnixNano())
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := accessRecord(t, s, key); got != -1 {
		t.Errorf("access record survives Delete")
	}
}

// accessRecord reads the stored access time of key; -1 if none.
func accessRecord(t *testing.T, s *Store, key string) int64 {
	t.Helper()
	got := int64(-1)
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(accessKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { got = decodeAccess(b); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestUnboundedStoreTracksNothing(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 0)
	if err := s.Put(ctx, "mod/m", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "mod/m"); err != nil {
		t.Fatal(err)
	}
	if len(s.access) != 0 || accessRecord(t, s, "mod/m") != -1 {
		t.Error("an unbounded store recorded an access")
	}
	if st, err := s.Evict(ctx); err != nil || st != (EvictStats{}) {
		t.Errorf("Evict on an unbounded store = %+v, %v", st, err)
	}
}

func TestBackgroundEviction(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{Dir: t.TempDir(), MaxSize: 64 << 10, GCInterval: -1, Now: time.Now})
	for i := range 20 {
		k := fmt.Sprintf("zip/example.com/m%02d/@v/v1.0.0.zip", i)
		if err := s.PutBlob(ctx, k, bytes.NewReader(pattern(8<<10, byte(i))), 8<<10); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.TotalBytes <= 64<<10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d bytes stored, want at most %d", st.TotalBytes, 64<<10)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDefaultEvictable(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"zip/example.com/m/@v/v1.0.0.zip", true},
		{"mod/example.com/m/@v/v1.0.0.mod", true},
		{"info/example.com/m/@v/v1.0.0.info", true},
		{"sumdb/sum.golang.org/lookup/example.com/m@v1.0.0", true},
		{"sumdb/sum.golang.org/tile/8/0/001", true},
		{"witness/sum.golang.org/latest", false},
		{"audit/x", false},
		{"list/example.com/m/@v/list", false},
		{"zip", false},
	}
	for _, tt := range tests {
		if got := DefaultEvictable(tt.key); got != tt.want {
			t.Errorf("DefaultEvictable(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
