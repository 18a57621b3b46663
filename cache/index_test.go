package cache

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// indexRecords reads the t/ records (key → access time and size) and the
// a/ records of s.
func indexRecords(t *testing.T, s *Store) (order map[string]accessRec, access map[string]accessRec, marked bool) {
	t.Helper()
	order, access = map[string]accessRec{}, map[string]accessRec{}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(markerIndex))
		marked = err == nil
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixOrder)
		it := txn.NewIterator(opts)
		for it.Rewind(); it.Valid(); it.Next() {
			at, key, ok := parseOrderKey(it.Item().Key())
			v, _ := it.Item().ValueCopy(nil)
			r := accessRec{at: at}
			if !ok || !r.decodeSize(v) {
				t.Errorf("malformed index record %q", it.Item().Key())
			}
			if _, dup := order[string(key)]; dup {
				t.Errorf("two index records for %s", key)
			}
			order[string(key)] = r
		}
		it.Close()
		opts.Prefix = []byte(prefixAccess)
		it = txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			r, ok := decodeAccessRec(v)
			if !ok {
				r.size = -1
			}
			access[string(it.Item().Key()[len(prefixAccess):])] = r
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return order, access, marked
}

// checkIndex fails t unless every object in want (key → size) has one t/
// record and one a/ record that agree, and no other object has any. Keys
// under zip/ hold a blob.
func checkIndex(t *testing.T, s *Store, want map[string]int64) {
	t.Helper()
	order, access, marked := indexRecords(t, s)
	if !marked {
		t.Error("no marker of a complete index")
	}
	if len(order) != len(want) || len(access) != len(want) {
		t.Errorf("%d index and %d access records, want %d", len(order), len(access), len(want))
	}
	for key, size := range want {
		o, a := order[key], access[key]
		if o.size != size || a != o || o.blob != strings.HasPrefix(key, "zip/") {
			t.Errorf("%s: index record %+v, access record %+v, want size %d and the same time", key, o, a, size)
		}
	}
}

func TestIndexFollowsWrites(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, t.TempDir(), 1<<20, clock)
	step := func() { clock.t = clock.t.Add(time.Second) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Put(ctx, "mod/a", pattern(10, 1)))
	step()
	must(s.PutBlob(ctx, "zip/b", bytes.NewReader(pattern(300, 2)), 300))
	step()
	must(s.Put(ctx, "zip/b", pattern(20, 3))) // a small value beside the blob: one object of 320 bytes
	step()
	must(s.Put(ctx, "mod/a", pattern(15, 4))) // replaced
	must(s.Put(ctx, "list/x", pattern(5, 5))) // never evictable: no records
	must(s.Put(ctx, "mod/gone", pattern(5, 6)))
	must(s.Delete(ctx, "mod/gone"))
	checkIndex(t, s, map[string]int64{"mod/a": 15, "zip/b": 320})
	step()
	if _, err := s.Get(ctx, "zip/b"); err != nil {
		t.Fatal(err)
	}
	must(s.FlushAccess(ctx))
	checkIndex(t, s, map[string]int64{"mod/a": 15, "zip/b": 320})
	if order, _, _ := indexRecords(t, s); order["zip/b"].at != clock.t.UnixNano() {
		t.Errorf("a flushed read did not move the index record: %+v", order["zip/b"])
	}
	// A read noted before a delete must not bring the records back.
	if _, err := s.Get(ctx, "mod/a"); err != nil {
		t.Fatal(err)
	}
	must(s.Delete(ctx, "mod/a"))
	must(s.FlushAccess(ctx))
	checkIndex(t, s, map[string]int64{"zip/b": 320})
}

// oldFormat turns the index of s into the layout of a cache from before
// it: no marker, no t/ records, 8-byte a/ records.
func oldFormat(t *testing.T, s *Store) {
	t.Helper()
	_, access, _ := indexRecords(t, s)
	if err := s.db.DropPrefix([]byte(prefixOrder), []byte(markerIndex)); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for key, r := range access {
			if err := txn.Set(accessKey(key), encodeAccess(time.Unix(0, r.at))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestIndexMigration opens caches without the index (from before it, or
// written while unbounded) as bounded stores: Open builds the index once,
// every object stays, and eviction follows the access times recorded
// before, or the stored times where none were.
func TestIndexMigration(t *testing.T) {
	ctx := context.Background()
	keys := []string{"mod/a", "zip/b", "info/c", "sumdb/d"}
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string, clock *fakeClock)
		want    []string // left after an eviction to 250 bytes (of 400)
	}{
		{"from before the index, with recorded reads", func(t *testing.T, dir string, clock *fakeClock) {
			s := boundedStore(t, dir, 1<<20, clock)
			fill(t, s, clock, keys)
			for _, k := range []string{"mod/a", "zip/b"} { // a and b become the most recent
				clock.t = clock.t.Add(time.Second)
				read(t, s, k)
			}
			if err := s.FlushAccess(ctx); err != nil {
				t.Fatal(err)
			}
			oldFormat(t, s)
			s.Close()
		}, []string{"mod/a", "zip/b"}},
		{"written while unbounded", func(t *testing.T, dir string, clock *fakeClock) {
			s := openStore(t, Config{Dir: dir, Now: clock.now, GCInterval: -1})
			fill(t, s, clock, keys)
			s.Close()
		}, []string{"info/c", "sumdb/d"}},
		{"bounded, then unbounded for a while", func(t *testing.T, dir string, clock *fakeClock) {
			s := boundedStore(t, dir, 1<<20, clock)
			fill(t, s, clock, keys[:2])
			s.Close()
			s = openStore(t, Config{Dir: dir, Now: clock.now, GCInterval: -1})
			if _, _, marked := indexRecords(t, s); !marked {
				t.Error("an unbounded store dropped the marker before writing anything")
			}
			if err := s.Delete(ctx, "mod/a"); err != nil { // leaves stale records behind
				t.Fatal(err)
			}
			if _, _, marked := indexRecords(t, s); marked {
				t.Error("an unbounded store deleted an evictable object and kept the marker")
			}
			fill(t, s, clock, []string{"mod/a", "info/c", "sumdb/d"})
			s.Close()
		}, []string{"info/c", "sumdb/d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := &fakeClock{t: testEpoch}
			tt.prepare(t, dir, clock)
			s := boundedStore(t, dir, 250, clock)
			if !s.indexBuilt {
				t.Error("Open did not build the index")
			}
			// Stats, not reads: a read would make every object as recent.
			if st, err := s.Stats(ctx); err != nil || st.TotalObjects != 4 || st.TotalBytes != 400 {
				t.Fatalf("after the migration %+v, %v; want the 4 objects of 100 bytes", st, err)
			}
			checkIndex(t, s, map[string]int64{"mod/a": 100, "zip/b": 100, "info/c": 100, "sumdb/d": 100})
			if _, err := s.Evict(ctx); err != nil {
				t.Fatal(err)
			}
			if got := present(t, s, keys); !sameSet(got, tt.want) {
				t.Errorf("after Evict %v remain, want %v", got, tt.want)
			}
		})
	}
}

// fill stores 100 bytes under each key, one second apart (zip/ keys as blobs).
func fill(t *testing.T, s *Store, clock *fakeClock, keys []string) {
	t.Helper()
	for i, k := range keys {
		clock.t = clock.t.Add(time.Second)
		var err error
		if k[:4] == "zip/" {
			err = s.PutBlob(context.Background(), k, bytes.NewReader(pattern(100, byte(i))), 100)
		} else {
			err = s.Put(context.Background(), k, pattern(100, byte(i)))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// read reads key as a small value or a blob.
func read(t *testing.T, s *Store, key string) {
	t.Helper()
	if key[:4] != "zip/" {
		if _, err := s.Get(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := s.OpenBlob(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}

// TestEvictSparesObjectsReadSinceTheIndexWasRead checks that each batch
// of a pass deletes only what its snapshot still lists when it commits: an
// object read (and flushed) between the batch's reads and its commit stays
// (the commit conflicts and the batch runs again). Malformed index records
// are dropped and count nothing.
func TestEvictSparesObjectsReadSinceTheIndexWasRead(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, t.TempDir(), 1<<20, clock)
	keys := []string{"mod/a", "mod/b", "mod/c"}
	fill(t, s, clock, keys)
	shortKey, badValue := prefixOrder+"\x00\x01", orderKey(1, "mod/bad")
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(shortKey), accessRec{size: 7}.appendSize(nil)); err != nil {
			return err
		}
		return txn.Set(badValue, []byte{0xff})
	})
	if err != nil {
		t.Fatal(err)
	}
	var batches [][]string
	s.evictHook = func(b *evictScratch) {
		var listed []string
		for _, v := range b.victims {
			listed = append(listed, v.key)
		}
		batches = append(batches, listed)
		if len(batches) == 1 {
			clock.t = clock.t.Add(time.Minute)
			read(t, s, "mod/a")
			if err := s.FlushAccess(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	n, size, err := s.evictOldest(ctx, 100)
	if err != nil || n != 1 || size != 100 {
		t.Errorf("evictOldest = %d objects, %d bytes, %v; want 1, 100", n, size, err)
	}
	want := [][]string{{string(badValue), shortKey, "mod/a"}, {string(badValue), shortKey, "mod/b"}}
	if !slices.EqualFunc(batches, want, slices.Equal) {
		t.Errorf("batches listed %q, want %q", batches, want)
	}
	if got := present(t, s, keys); !sameSet(got, []string{"mod/a", "mod/c"}) {
		t.Errorf("%v remain, want mod/a (read before its batch committed) and mod/c", got)
	}
	checkIndex(t, s, map[string]int64{"mod/a": 100, "mod/c": 100})
	if st, err := s.Stats(ctx); err != nil || st.TotalObjects != 2 || st.TotalBytes != 200 {
		t.Errorf("Stats = %d objects, %d bytes, %v; want 2, 200", st.TotalObjects, st.TotalBytes, err)
	}
}

func TestAccessRecordFormats(t *testing.T) {
	tests := []struct {
		name    string
		rec     []byte
		want    accessRec
		indexed bool
	}{
		{"indexed", accessRec{at: 42, size: 300}.encode(), accessRec{at: 42, size: 300}, true},
		{"indexed blob", accessRec{at: 42, size: 300, blob: true}.encode(), accessRec{at: 42, size: 300, blob: true}, true},
		{"before the index", encodeAccess(time.Unix(0, 42)), accessRec{at: 42}, false},
		{"short", []byte{1, 2}, accessRec{}, false},
		{"trailing bytes", append(accessRec{at: 42, size: 1}.encode(), 0), accessRec{at: 42, size: 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, indexed := decodeAccessRec(tt.rec)
			if got.at != tt.want.at || indexed != tt.indexed || (indexed && got != tt.want) {
				t.Errorf("decodeAccessRec = %+v, %v; want %+v, %v", got, indexed, tt.want, tt.indexed)
			}
			if decodeAccess(tt.rec) != tt.want.at {
				t.Errorf("decodeAccess = %d, want %d", decodeAccess(tt.rec), tt.want.at)
			}
		})
	}
}

// TestIndexKeptByOtherWrites checks that an unbounded Open that writes
// only keys never evicted (as the offline witness commands do) leaves the
// index complete: the next bounded Open does not build it again.
func TestIndexKeptByOtherWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clock := &fakeClock{t: testEpoch}
	s := boundedStore(t, dir, 1<<20, clock)
	fill(t, s, clock, []string{"mod/a", "zip/b"})
	s.Close()
	s = openStore(t, Config{Dir: dir, Now: clock.now, GCInterval: -1})
	if err := s.Put(ctx, "witness/sum.golang.org/latest", []byte("tree")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = boundedStore(t, dir, 1<<20, clock)
	if s.indexBuilt {
		t.Error("the index was built again after an unbounded Open that wrote only witness state")
	}
	checkIndex(t, s, map[string]int64{"mod/a": 100, "zip/b": 100})
}
