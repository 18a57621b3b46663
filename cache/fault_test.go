package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestStatsIncremental checks the incremental Stats against a full scan
// after every step of a random sequence of writes, replacements,
// deletions and eviction passes, and across a reopen.
func TestStatsIncremental(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Dir: dir, ChunkSize: 4 << 10, GCInterval: -1, MaxSize: 256 << 10, ManualEviction: true}
	s := openStore(t, cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"mod/a", "mod/b", "info/a", "zip/a", "zip/b", "witness/x", "list/a", "sumdb/t"}
	for step := range 400 {
		key := keys[rng.IntN(len(keys))]
		var err error
		switch op := rng.IntN(10); {
		case op < 4: // small values stay under ValueThreshold, so sizes are exact
			err = s.Put(ctx, key, pattern(rng.IntN(3000), byte(step)))
		case op < 7:
			n := rng.IntN(40 << 10)
			err = s.PutBlob(ctx, key, bytes.NewReader(pattern(n, byte(step))), int64(n))
		case op < 9:
			err = s.Delete(ctx, key)
		default:
			_, err = s.Evict(ctx)
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		checkStats(t, s, fmt.Sprintf("step %d", step))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := s.stats.snapshot()
	s = openStore(t, cfg)
	if got := s.stats.snapshot(); !reflect.DeepEqual(got, before) {
		t.Errorf("after reopen: %+v, before close: %+v", got, before)
	}
}

func checkStats(t *testing.T, s *Store, when string) {
	t.Helper()
	got, err := s.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.scanStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: incremental stats %+v, a scan counts %+v", when, got, want)
	}
}

// flipIn flips one byte of the first occurrence of needle in the files of
// dir with the suffix ext, and reports whether it found one.
func flipIn(t *testing.T, dir, ext string, needle []byte) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, needle); i >= 0 {
			b[i+len(needle)/2] ^= 0x40
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return true
		}
	}
	return false
}

// TestFlippedBytesAreDetected flips a byte in the value log under a blob
// and under a small value kept there, and checks that reads fail with
// ErrCorrupt (Verify before any byte is handed out), never return the
// changed bytes, and that the entry can be deleted and stored again.
func TestFlippedBytesAreDetected(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{Dir: dir, GCInterval: -1}
	s := openStore(t, cfg)
	blob := pattern(3<<20, 9)
	big := bytes.Repeat([]byte("a small value kept in the value log "), 300) // over ValueThreshold
	if err := s.PutBlob(ctx, "zip/x", bytes.NewReader(blob), int64(len(blob))); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "sumdb/tile", big); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !flipIn(t, dir, ".vlog", blob[2<<20:2<<20+4096]) || !flipIn(t, dir, ".vlog", big[:1024]) {
		t.Fatal("the stored bytes are not in the value log")
	}
	s = openStore(t, cfg)

	b, err := s.OpenBlob(ctx, "zip/x")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify of the flipped blob: %v, want ErrCorrupt", err)
	}
	if n, err := b.Read(make([]byte, 10)); n != 0 || !errors.Is(err, ErrCorrupt) {
		t.Errorf("Read after a failed Verify: %d bytes, %v", n, err)
	}
	b.Close()
	if e, err := s.Get(ctx, "sumdb/tile"); err == nil {
		t.Errorf("Get of the flipped value succeeded (equal to the stored value: %v)", bytes.Equal(e.Value, big))
	}
	for _, key := range []string{"zip/x", "sumdb/tile"} {
		if err := s.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	if err := s.PutBlob(ctx, "zip/x", bytes.NewReader(blob), int64(len(blob))); err != nil {
		t.Fatal(err)
	}
	b, err = s.OpenBlob(ctx, "zip/x")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Verify(); err != nil {
		t.Fatalf("Verify of the stored again blob: %v", err)
	}
}
