package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock is a settable Config.Now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

var testEpoch = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)

// fixedNow is a Config.Now that always returns testEpoch.
func fixedNow() time.Time { return testEpoch }

// newMemStore opens an in-memory store with the given chunk size.
func newMemStore(t testing.TB, chunkSize int) *Store {
	t.Helper()
	return openStore(t, Config{InMemory: true, ChunkSize: chunkSize})
}

// openStore opens a store and closes it at the end of the test.
func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// countChunks returns the number of chunk keys in the store.
func countChunks(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixChunk)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("counting chunks: %v", err)
	}
	return n
}

// readBlob reads the whole blob under key.
func readBlob(t testing.TB, s *Store, key string) []byte {
	t.Helper()
	b, err := s.OpenBlob(context.Background(), key)
	if err != nil {
		t.Fatalf("OpenBlob(%q): %v", key, err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("reading blob %q: %v", key, err)
	}
	return data
}

// pattern returns n bytes of a deterministic pattern that differs per seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) + byte(i>>8) + seed
	}
	return p
}

func TestOpenConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no dir", Config{}},
		{"negative chunk", Config{InMemory: true, ChunkSize: -1}},
		{"in-memory chunk too big", Config{InMemory: true, ChunkSize: 2 << 20}},
		{"disk chunk too big", Config{Dir: "x", ChunkSize: MaxChunkSize + 1}},
		{"small memtable", Config{InMemory: true, MemTableSize: 1 << 20}},
		{"one compactor", Config{InMemory: true, NumCompactors: 1}},
		{"tiny value log", Config{InMemory: true, ValueLogFileSize: 1 << 10}},
		{"value threshold too big", Config{Dir: "x", ValueThreshold: 2 << 20}},
		{"negative value threshold", Config{Dir: "x", ValueThreshold: -1}},
		{"chunk vs value log", Config{Dir: "x", ChunkSize: 1 << 20, ValueLogFileSize: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(context.Background(), tt.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Open = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	s, err := Open(context.Background(), Config{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
}

func TestBadgerLogsGoToZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	openStore(t, Config{Dir: t.TempDir(), Logger: zap.New(core)})
	badgerLogs := logs.FilterLoggerName("cache.badger").All()
	if len(badgerLogs) == 0 {
		t.Fatal("no Badger log entries reached zap")
	}
	for _, e := range badgerLogs {
		if e.Level > zapcore.WarnLevel {
			t.Errorf("Badger log at %v: %q", e.Level, e.Message)
		}
		if bytes.HasSuffix([]byte(e.Message), []byte("\n")) {
			t.Errorf("message keeps its newline: %q", e.Message)
		}
	}
}

func TestReopenPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	content := pattern(2500, 1)
	cfg := Config{Dir: dir, ChunkSize: 1000, GCInterval: -1}

	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stored := time.Now().UTC()
	if err := s.Put(ctx, "info/m/@v/v1.0.0.info", []byte(`{"Version":"v1.0.0"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "zip/m/@v/v1.0.0.zip", bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Existing blobs keep the chunk size they were written with.
	s = openStore(t, Config{Dir: dir, ChunkSize: 300, Now: time.Now})
	e, err := s.Get(ctx, "info/m/@v/v1.0.0.info")
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value) != `{"Version":"v1.0.0"}` {
		t.Errorf("value = %q", e.Value)
	}
	if d := e.Stored.Sub(stored); d < -time.Second || d > time.Second {
		t.Errorf("Stored = %v, want about %v", e.Stored, stored)
	}
	if got := readBlob(t, s, "zip/m/@v/v1.0.0.zip"); !bytes.Equal(got, content) {
		t.Errorf("blob differs after reopen")
	}
	if n := countChunks(t, s); n != 3 {
		t.Errorf("%d chunks after reopen, want 3", n)
	}
}
