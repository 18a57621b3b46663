package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/pgtest"
)

// openTestDB starts a server and opens a fresh migrated database on it.
func openTestDB(t *testing.T) (*DB, string) {
	t.Helper()
	return newTestDB(t, pgtest.Start(t))
}

// newTestDB opens a fresh migrated database on srv.
func newTestDB(t testing.TB, srv *pgtest.Server) (*DB, string) {
	t.Helper()
	url := srv.NewDatabase(t)
	db, err := Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, url
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func metaOf(b []byte, mark byte) ObjectMeta {
	return ObjectMeta{Size: int64(len(b)), SHA256: sha256.Sum256(b), Mark: mark}
}

// readObject opens key and reads it whole.
// checkedMeta is what Open reports of b stored by Put: its chunks have
// their sums.
func checkedMeta(b []byte, mark byte) ObjectMeta {
	m := metaOf(b, mark)
	m.ChunksChecked = true
	return m
}

func readObject(t *testing.T, o *Objects, key string) ([]byte, ObjectMeta, bool, error) {
	t.Helper()
	r, meta, ok, err := o.Open(context.Background(), key)
	if err != nil || !ok {
		return nil, meta, ok, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, meta, true, err
}

func TestObjectsRoundTrip(t *testing.T) {
	db, _ := openTestDB(t)
	const chunk = 1024
	o := NewObjects(db, ObjectsConfig{ChunkSize: chunk, Gate: "g1"})
	tests := []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"under a chunk", chunk - 1},
		{"one chunk", chunk},
		{"several chunks and a tail", 3*chunk + 5},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "zip/example.com/m/@v/v1.0." + string(rune('0'+i))
			want := randomBytes(tt.size, uint64(i))
			if err := o.Put(context.Background(), key, bytes.NewReader(want), metaOf(want, 1)); err != nil {
				t.Fatal(err)
			}
			got, meta, ok, err := readObject(t, o, key)
			if err != nil || !ok {
				t.Fatalf("read back: ok=%v err=%v", ok, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read back %d bytes that differ from the %d stored", len(got), len(want))
			}
			if wantMeta := checkedMeta(want, 1); meta != wantMeta {
				t.Fatalf("meta %+v, want %+v", meta, wantMeta)
			}
		})
	}
	if _, _, ok, err := readObject(t, o, "zip/example.com/absent/@v/v1.0.0"); ok || err != nil {
		t.Fatalf("absent key: ok=%v err=%v, want not found", ok, err)
	}
}

func TestObjectsPutRefusesMismatchAndKeepsTheOldObject(t *testing.T) {
	db, _ := openTestDB(t)
	o := NewObjects(db, ObjectsConfig{ChunkSize: 100})
	ctx := context.Background()
	const key = "mod/example.com/m/@v/v1.0.0"
	old := randomBytes(250, 7)
	if err := o.Put(ctx, key, bytes.NewReader(old), metaOf(old, 1)); err != nil {
		t.Fatal(err)
	}
	body := randomBytes(250, 8)
	wrongSum := metaOf(body, 1)
	wrongSum.SHA256[0] ^= 1
	tests := []struct {
		name string
		r    io.Reader
		meta ObjectMeta
	}{
		{"reader ends early", bytes.NewReader(body[:249]), metaOf(body, 1)},
		{"reader has more", bytes.NewReader(append(body, 'x')), metaOf(body, 1)},
		{"other SHA-256", bytes.NewReader(body), wrongSum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := o.Put(ctx, key, tt.r, tt.meta)
			if !errors.Is(err, ErrObjectMismatch) {
				t.Fatalf("Put: %v, want ErrObjectMismatch", err)
			}
			got, meta, ok, err := readObject(t, o, key)
			if err != nil || !ok || !bytes.Equal(got, old) || meta != checkedMeta(old, 1) {
				t.Fatalf("after a refused Put the old object is not intact: ok=%v err=%v", ok, err)
			}
		})
	}
	var chunks int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM modgate_object_chunks").Scan(&chunks); err != nil {
		t.Fatal(err)
	}
	if chunks != 3 {
		t.Fatalf("%d chunk rows, want the old object's 3", chunks)
	}
}

func TestObjectsPutReplaces(t *testing.T) {
	db, _ := openTestDB(t)
	o := NewObjects(db, ObjectsConfig{ChunkSize: 64})
	ctx := context.Background()
	const key = "zip/example.com/m/@v/v1.0.0"
	for i, size := range []int{1000, 70} {
		b := randomBytes(size, uint64(i))
		if err := o.Put(ctx, key, bytes.NewReader(b), metaOf(b, byte(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	got, meta, _, err := readObject(t, o, key)
	if err != nil || !bytes.Equal(got, randomBytes(70, 1)) || meta.Mark != 2 {
		t.Fatalf("read back after replace: mark %d, %d bytes, %v", meta.Mark, len(got), err)
	}
	var chunks int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM modgate_object_chunks").Scan(&chunks); err != nil {
		t.Fatal(err)
	}
	if chunks != 2 {
		t.Fatalf("%d chunk rows, want the new object's 2 (the old ones deleted)", chunks)
	}
}

func TestObjectsReaderFindsCorruption(t *testing.T) {
	const key = "zip/example.com/m/@v/v1.0.0"
	tests := []struct {
		name, sql string
	}{
		{"missing chunk", "DELETE FROM modgate_object_chunks WHERE idx = 1"},
		{"missing last chunk", "DELETE FROM modgate_object_chunks WHERE idx = 3"},
		{"short chunk", "UPDATE modgate_object_chunks SET data = substring(data from 2) WHERE idx = 0"},
		{"long last chunk", "UPDATE modgate_object_chunks SET data = data || '\\x00'::bytea WHERE idx = 3"},
		{"extra chunk", "INSERT INTO modgate_object_chunks " +
			"SELECT object_id, 4, data, sha256 FROM modgate_object_chunks WHERE idx = 3"},
		{"size changed", "UPDATE modgate_objects SET size = size + 1"},
		{"flipped byte", "UPDATE modgate_object_chunks SET data = set_byte(data, 5, get_byte(data, 5) # 1) WHERE idx = 2"},
		{"other chunk sum", "UPDATE modgate_object_chunks SET sha256 = sha256(data || '\\x00'::bytea) WHERE idx = 1"},
		{"chunk copied over another", "UPDATE modgate_object_chunks c SET data = d.data " +
			"FROM (SELECT data FROM modgate_object_chunks WHERE idx = 1) d WHERE c.idx = 0"},
	}
	srv := pgtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, _ := putAltered(t, srv, key, uint64(i), tt.sql)
			if _, _, _, err := readObject(t, o, key); !errors.Is(err, ErrObjectCorrupt) {
				t.Fatalf("reading a corrupted object: %v, want ErrObjectCorrupt", err)
			}
		})
	}
}

// putAltered stores 350 random bytes (from seed) under key in 100-byte
// chunks, in a fresh database of srv, then runs sql on it, and returns
// the object level and the bytes stored.
func putAltered(t *testing.T, srv *pgtest.Server, key string, seed uint64, sql string) (*Objects, []byte) {
	t.Helper()
	db, _ := newTestDB(t, srv)
	o := NewObjects(db, ObjectsConfig{ChunkSize: 100})
	b := randomBytes(350, seed)
	if err := o.Put(context.Background(), key, bytes.NewReader(b), metaOf(b, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
		t.Fatal(err)
	}
	return o, b
}

// Objects stored before migration 0052 have no chunk sums: they read back
// whole, with ChunksChecked false, so that the caller checks them whole
// before serving them; one chunk without its sum is enough.
func TestObjectsWithoutChunkSums(t *testing.T) {
	const key = "zip/example.com/m/@v/v1.0.0"
	tests := []struct {
		name, sql string
	}{
		{"none", "UPDATE modgate_object_chunks SET sha256 = NULL"},
		{"one", "UPDATE modgate_object_chunks SET sha256 = NULL WHERE idx = 2"},
	}
	srv := pgtest.Start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, b := putAltered(t, srv, key, uint64(i), tt.sql)
			got, meta, ok, err := readObject(t, o, key)
			if err != nil || !ok || !bytes.Equal(got, b) {
				t.Fatalf("read back: ok=%v err=%v, equal %v", ok, err, bytes.Equal(got, b))
			}
			if meta.ChunksChecked {
				t.Fatal("ChunksChecked is true for an object with a chunk that has no sum")
			}
		})
	}
}

// blockingReader gives its first n bytes, then blocks until release.
type blockingReader struct {
	r       io.Reader
	n       int
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		b.once.Do(func() { close(b.reached) })
		<-b.release
		return 0, errors.New("the writer died")
	}
	p = p[:min(len(p), b.n)]
	n, err := b.r.Read(p)
	b.n -= n
	return n, err
}

func TestObjectsHalfWrittenIsNeverVisible(t *testing.T) {
	db, _ := openTestDB(t)
	o := NewObjects(db, ObjectsConfig{ChunkSize: 1 << 10})
	ctx := context.Background()
	const key = "zip/example.com/big/@v/v1.0.0"
	b := randomBytes(64<<10, 3)
	br := &blockingReader{r: bytes.NewReader(b), n: 40 << 10, reached: make(chan struct{}), release: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- o.Put(ctx, key, br, metaOf(b, 1)) }()
	<-br.reached
	if _, _, ok, err := readObject(t, o, key); ok || err != nil {
		t.Fatalf("while the writer is mid-object: ok=%v err=%v, want not found", ok, err)
	}
	close(br.release)
	if err := <-errc; err == nil {
		t.Fatal("Put of a reader that failed succeeded")
	}
	if _, _, ok, err := readObject(t, o, key); ok || err != nil {
		t.Fatalf("after the writer failed: ok=%v err=%v, want not found", ok, err)
	}
}

func TestObjectsConcurrentPutsOfOneKey(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	const key = "zip/example.com/m/@v/v1.0.0"
	b := randomBytes(10<<10, 5)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		o := NewObjects(db, ObjectsConfig{ChunkSize: 1 << 10, Gate: string(rune('a' + i))})
		wg.Go(func() { errs[i] = o.Put(ctx, key, bytes.NewReader(b), metaOf(b, 1)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, _, ok, err := readObject(t, NewObjects(db, ObjectsConfig{}), key)
	if err != nil || !ok || !bytes.Equal(got, b) {
		t.Fatalf("read back: ok=%v err=%v", ok, err)
	}
	var objects, chunks int
	if err := db.Pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM modgate_objects), "+
		"(SELECT count(*) FROM modgate_object_chunks)").Scan(&objects, &chunks); err != nil {
		t.Fatal(err)
	}
	if objects != 1 || chunks != 10 {
		t.Fatalf("%d objects and %d chunks, want 1 and 10", objects, chunks)
	}
}

func TestObjectsRefuseBadKeys(t *testing.T) {
	db, _ := openTestDB(t)
	o := NewObjects(db, ObjectsConfig{})
	for _, key := range []string{"", "a\x00b", "\xff", string(make([]byte, maxKeyLen+1))} {
		if err := o.Put(context.Background(), key, bytes.NewReader(nil), metaOf(nil, 0)); err == nil {
			t.Errorf("Put(%q) succeeded", key)
		}
		if _, _, _, err := o.Open(context.Background(), key); err == nil {
			t.Errorf("Open(%q) succeeded", key)
		}
	}
}

// BenchmarkObjectsRead reads a 48 MiB object of random (incompressible)
// bytes back from PostgreSQL, as a gate reading another gate's zip does
// (bench scenario 12b), to show where that read's time goes.
func BenchmarkObjectsRead(b *testing.B) {
	db, _ := newTestDB(b, pgtest.Start(b))
	o := NewObjects(db, ObjectsConfig{Gate: "bench"})
	data := randomBytes(48<<20, 12)
	if err := o.Put(context.Background(), "zip/example.com/big/@v/v1.0.0.zip", bytes.NewReader(data), metaOf(data, 1)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	buf := make([]byte, 1<<20)
	for b.Loop() {
		r, _, ok, err := o.Open(context.Background(), "zip/example.com/big/@v/v1.0.0.zip")
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
