package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/dgraph-io/badger/v4"
)

func TestBlobRoundtrip(t *testing.T) {
	ctx := context.Background()
	readers := map[string]func([]byte) io.Reader{
		"plain":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
		"data+EOF": func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) },
	}
	for _, cs := range []int{1, 4, 64, 1000} {
		sizes := []int{0, 1, cs - 1, cs, cs + 1, 3 * cs, 3*cs + 1}
		slices.Sort(sizes)
		for _, size := range slices.Compact(sizes) {
			for _, declared := range []bool{true, false} {
				for rname, newReader := range readers {
					name := fmt.Sprintf("chunk=%d/size=%d/declared=%v/%s", cs, size, declared, rname)
					t.Run(name, func(t *testing.T) {
						s := newMemStore(t, cs)
						content := pattern(size, byte(cs))
						n := int64(-1)
						if declared {
							n = int64(size)
						}
						const key = "zip/example.com/!upper/@v/v1.0.0.zip"
						if err := s.PutBlob(ctx, key, newReader(content), n); err != nil {
							t.Fatalf("PutBlob: %v", err)
						}
						checkBlob(t, s, key, content)
						if got, want := countChunks(t, s), (size+cs-1)/cs; got != want {
							t.Errorf("%d chunks, want %d", got, want)
						}
					})
				}
			}
		}
	}
}

// checkBlob checks that key holds a complete blob with content.
func checkBlob(t *testing.T, s *Store, key string, content []byte) {
	t.Helper()
	ctx := context.Background()
	if ok, err := s.HasBlob(ctx, key); !ok || err != nil {
		t.Fatalf("HasBlob = %v, %v; want true", ok, err)
	}
	b, err := s.OpenBlob(ctx, key)
	if err != nil {
		t.Fatalf("OpenBlob: %v", err)
	}
	defer b.Close()
	if b.Size() != int64(len(content)) {
		t.Errorf("Size = %d, want %d", b.Size(), len(content))
	}
	if !b.Stored().Equal(testEpoch) {
		t.Errorf("Stored = %v, want %v", b.Stored(), testEpoch)
	}
	if b.SHA256() != sha256.Sum256(content) {
		t.Errorf("SHA256 differs")
	}
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if !bytes.Equal(got, content) {
		t.Errorf("content differs: got %d bytes, want %d", len(got), len(content))
	}
}

func TestPutBlobSizeMismatch(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		content  int
		declared int64
	}{
		{"short", 9, 10},
		{"short by a chunk", 6, 10},
		{"empty", 0, 10},
		{"long", 11, 10},
		{"long by a chunk", 14, 10},
		{"long, declared empty", 1, 0},
		{"long, exact chunks", 9, 8},
	}
	for _, tt := range tests {
		for _, existing := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/existing=%v", tt.name, existing), func(t *testing.T) {
				s := newMemStore(t, 4)
				const key = "zip/m/@v/v1.zip"
				old := pattern(7, 9)
				if existing {
					if err := s.PutBlob(ctx, key, bytes.NewReader(old), 7); err != nil {
						t.Fatal(err)
					}
				}
				r := bytes.NewReader(pattern(tt.content, 1))
				if err := s.PutBlob(ctx, key, r, tt.declared); !errors.Is(err, ErrSizeMismatch) {
					t.Fatalf("PutBlob = %v, want ErrSizeMismatch", err)
				}
				checkUnchanged(t, s, key, existing, old)
			})
		}
	}
}

// checkUnchanged checks that a failed PutBlob left key as it was (holding
// old if existing, else absent) and left no chunks of its own.
func checkUnchanged(t *testing.T, s *Store, key string, existing bool, old []byte) {
	t.Helper()
	if !existing {
		if ok, err := s.HasBlob(context.Background(), key); ok || err != nil {
			t.Errorf("HasBlob = %v, %v; want false", ok, err)
		}
		if n := countChunks(t, s); n != 0 {
			t.Errorf("%d chunks left", n)
		}
		return
	}
	checkBlob(t, s, key, old)
	if got, want := countChunks(t, s), (len(old)+s.chunkSize-1)/s.chunkSize; got != want {
		t.Errorf("%d chunks, want the old blob's %d", got, want)
	}
}

// cancelingReader cancels a context once it has returned after bytes.
type cancelingReader struct {
	r      io.Reader
	after  int
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.after -= n; c.after <= 0 {
		c.cancel()
	}
	return n, err
}

func TestPutBlobFailureCleansUp(t *testing.T) {
	readErr := errors.New("connection reset")
	tests := []struct {
		name    string
		reader  func(cancel context.CancelFunc) io.Reader
		size    int64
		wantErr error
	}{
		{"ctx canceled mid-way", func(cancel context.CancelFunc) io.Reader {
			return &cancelingReader{r: bytes.NewReader(pattern(40, 1)), after: 10, cancel: cancel}
		}, 40, context.Canceled},
		{"ctx canceled, unknown size", func(cancel context.CancelFunc) io.Reader {
			return &cancelingReader{r: bytes.NewReader(pattern(40, 1)), after: 10, cancel: cancel}
		}, -1, context.Canceled},
		{"read error", func(context.CancelFunc) io.Reader {
			return io.MultiReader(bytes.NewReader(pattern(10, 1)), iotest.ErrReader(readErr))
		}, 40, readErr},
		{"read error after last byte", func(context.CancelFunc) io.Reader {
			return io.MultiReader(bytes.NewReader(pattern(12, 1)), iotest.ErrReader(readErr))
		}, 12, readErr},
	}
	for _, tt := range tests {
		for _, existing := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/existing=%v", tt.name, existing), func(t *testing.T) {
				s := newMemStore(t, 4)
				const key = "zip/m/@v/v1.zip"
				old := pattern(7, 9)
				if existing {
					if err := s.PutBlob(context.Background(), key, bytes.NewReader(old), 7); err != nil {
						t.Fatal(err)
					}
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if err := s.PutBlob(ctx, key, tt.reader(cancel), tt.size); !errors.Is(err, tt.wantErr) {
					t.Fatalf("PutBlob = %v, want %v", err, tt.wantErr)
				}
				checkUnchanged(t, s, key, existing, old)
			})
		}
	}
}

func TestReplaceWhileReading(t *testing.T) {
	ctx := context.Background()
	stores := map[string]func(t *testing.T) *Store{
		"memory": func(t *testing.T) *Store { return newMemStore(t, 4) },
		// Chunks above ValueThreshold live in Badger's value log.
		"disk": func(t *testing.T) *Store {
			return openStore(t, Config{Dir: t.TempDir(), ChunkSize: 70_000})
		},
	}
	changes := map[string]func(s *Store, key string, next []byte) error{
		"replace": func(s *Store, key string, next []byte) error {
			return s.PutBlob(ctx, key, bytes.NewReader(next), int64(len(next)))
		},
		"delete": func(s *Store, key string, _ []byte) error { return s.Delete(ctx, key) },
	}
	for sname, newStore := range stores {
		for cname, change := range changes {
			t.Run(sname+"/"+cname, func(t *testing.T) {
				s := newStore(t)
				const key = "zip/m/@v/v1.zip"
				first, next := pattern(10*s.chunkSize/4, 1), pattern(7*s.chunkSize/4, 2)
				if err := s.PutBlob(ctx, key, bytes.NewReader(first), int64(len(first))); err != nil {
					t.Fatal(err)
				}
				b, err := s.OpenBlob(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				head := make([]byte, s.chunkSize+1)
				if _, err := io.ReadFull(b, head); err != nil {
					t.Fatal(err)
				}
				if err := change(s, key, next); err != nil {
					t.Fatal(err)
				}
				rest, err := io.ReadAll(b)
				if err != nil {
					t.Fatalf("reading the old blob after the change: %v", err)
				}
				if got := append(head, rest...); !bytes.Equal(got, first) || b.Size() != int64(len(first)) {
					t.Errorf("old reader got %d bytes, not the old content", len(got))
				}
				b.Close()
				if cname == "replace" {
					checkBlob(t, s, key, next)
				} else if ok, _ := s.HasBlob(ctx, key); ok {
					t.Error("blob still there after Delete")
				}
			})
		}
	}
}

func TestConcurrentPutBlobSameKey(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 16)
	const key = "zip/m/@v/v1.zip"
	var contents [][]byte
	for i := range 6 {
		contents = append(contents, pattern(40+17*i, byte(i)))
	}
	var wg sync.WaitGroup
	for _, c := range contents {
		wg.Go(func() {
			for range 5 {
				if err := s.PutBlob(ctx, key, bytes.NewReader(c), int64(len(c))); err != nil {
					t.Error(err)
				}
			}
		})
		wg.Go(func() {
			for range 5 {
				got, err := readAll(ctx, s, key)
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
				}
				if err == nil && !slices.ContainsFunc(contents, func(c []byte) bool { return bytes.Equal(c, got) }) {
					t.Errorf("read a torn blob of %d bytes", len(got))
				}
			}
		})
	}
	wg.Wait()
	got, err := readAll(ctx, s, key)
	if err != nil {
		t.Fatal(err)
	}
	if n, want := countChunks(t, s), (len(got)+15)/16; n != want {
		t.Errorf("%d chunks, want %d (leaked generations)", n, want)
	}
}

// readAll reads the blob under key.
func readAll(ctx context.Context, s *Store, key string) ([]byte, error) {
	b, err := s.OpenBlob(ctx, key)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return io.ReadAll(b)
}

// seekOp is one step of TestBlobSeek: a Seek, then a read of up to n bytes.
type seekOp struct {
	offset  int64
	whence  int
	wantPos int64 // -1: Seek must fail
	n       int
	want    string
}

func TestBlobSeek(t *testing.T) {
	tests := []struct {
		name string
		ops  []seekOp
	}{
		{"start, across a boundary", []seekOp{{3, io.SeekStart, 3, 3, "345"}}},
		{"current after a read", []seekOp{{0, io.SeekStart, 0, 4, "0123"}, {2, io.SeekCurrent, 6, 10, "6789"}}},
		{"current backwards", []seekOp{{0, io.SeekStart, 0, 9, "012345678"}, {-8, io.SeekCurrent, 1, 5, "12345"}}},
		{"end", []seekOp{{-3, io.SeekEnd, 7, 5, "789"}}},
		{"at end", []seekOp{{0, io.SeekEnd, 10, 1, ""}}},
		{"past end", []seekOp{{5, io.SeekEnd, 15, 1, ""}, {2, io.SeekStart, 2, 2, "23"}}},
		{"whole chunk", []seekOp{{4, io.SeekStart, 4, 4, "4567"}}},
		{"back to start", []seekOp{{6, io.SeekStart, 6, 4, "6789"}, {0, io.SeekStart, 0, 10, "0123456789"}}},
		{"negative", []seekOp{{-1, io.SeekStart, -1, 0, ""}}},
		{"negative current", []seekOp{{-1, io.SeekCurrent, -1, 0, ""}}},
		{"negative end", []seekOp{{-11, io.SeekEnd, -1, 0, ""}}},
		{"bad whence", []seekOp{{0, 7, -1, 0, ""}}},
	}
	ctx := context.Background()
	s := newMemStore(t, 4)
	const key = "zip/m/@v/v1.zip"
	if err := s.PutBlob(ctx, key, strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := s.OpenBlob(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			for i, op := range tt.ops {
				pos, err := b.Seek(op.offset, op.whence)
				if op.wantPos < 0 {
					if err == nil {
						t.Errorf("op %d: Seek(%d, %d) = %d, want an error", i, op.offset, op.whence, pos)
					}
					continue
				}
				if err != nil || pos != op.wantPos {
					t.Fatalf("op %d: Seek(%d, %d) = %d, %v; want %d", i, op.offset, op.whence, pos, err, op.wantPos)
				}
				got, err := io.ReadAll(io.LimitReader(b, int64(op.n)))
				if err != nil || string(got) != op.want {
					t.Errorf("op %d: read %q, %v; want %q", i, got, err, op.want)
				}
			}
		})
	}
}

func TestBlobServeContent(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 4)
	const key = "zip/m/@v/v1.zip"
	if err := s.PutBlob(ctx, key, strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.OpenBlob(r.Context(), key)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer b.Close()
		http.ServeContent(w, r, "v1.zip", b.Stored(), b)
	}))
	defer srv.Close()
	tests := []struct {
		rangeHdr   string
		wantStatus int
		want       string
	}{
		{"", http.StatusOK, "0123456789"},
		{"bytes=3-8", http.StatusPartialContent, "345678"},
		{"bytes=-2", http.StatusPartialContent, "89"},
		{"bytes=20-", http.StatusRequestedRangeNotSatisfiable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rangeHdr, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			if tt.rangeHdr != "" {
				req.Header.Set("Range", tt.rangeHdr)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || (tt.want != "" && string(body) != tt.want) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, tt.wantStatus, tt.want)
			}
		})
	}
}

func TestBlobCorrupt(t *testing.T) {
	ctx := context.Background()
	const key = "zip/m/@v/v1.zip"
	tests := []struct {
		name    string
		corrupt func(txn *badger.Txn, gen uint64) error
		seek    int64
		want    string // bytes delivered before the error
		wantErr error
	}{
		{"missing middle chunk", func(txn *badger.Txn, gen uint64) error {
			return txn.Delete(chunkKey(gen, 1))
		}, 0, "0123", ErrCorrupt},
		{"missing last chunk", func(txn *badger.Txn, gen uint64) error {
			return txn.Delete(chunkKey(gen, 2))
		}, 0, "01234567", ErrCorrupt},
		{"short chunk", func(txn *badger.Txn, gen uint64) error {
			return txn.Set(chunkKey(gen, 1), []byte("45"))
		}, 0, "0123", ErrCorrupt},
		{"long last chunk", func(txn *badger.Txn, gen uint64) error {
			return txn.Set(chunkKey(gen, 2), []byte("8901"))
		}, 0, "01234567", ErrCorrupt},
		{"changed bytes: last chunk withheld", func(txn *badger.Txn, gen uint64) error {
			return txn.Set(chunkKey(gen, 1), []byte("XXXX"))
		}, 0, "0123XXXX", ErrCorrupt},
		{"changed bytes, read from a later byte of the first chunk", func(txn *badger.Txn, gen uint64) error {
			return txn.Set(chunkKey(gen, 1), []byte("XXXX"))
		}, 1, "123XXXX", ErrCorrupt},
		{"changed bytes, first chunk skipped: not detectable", func(txn *badger.Txn, gen uint64) error {
			return txn.Set(chunkKey(gen, 1), []byte("XXXX"))
		}, 4, "XXXX89", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(t, 4)
			if err := s.PutBlob(ctx, key, strings.NewReader("0123456789"), 10); err != nil {
				t.Fatal(err)
			}
			corruptChunks(t, s, key, tt.corrupt)
			b, err := s.OpenBlob(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if _, err := b.Seek(tt.seek, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(b)
			if !errors.Is(err, tt.wantErr) || string(got) != tt.want {
				t.Errorf("ReadAll = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
			if tt.wantErr != nil {
				if _, err := b.Read(make([]byte, 1)); !errors.Is(err, tt.wantErr) {
					t.Errorf("Read after the error = %v, want it again", err)
				}
			}
		})
	}
}

// corruptChunks lets corrupt change the chunks of the blob under key.
func corruptChunks(t *testing.T, s *Store, key string, corrupt func(txn *badger.Txn, gen uint64) error) {
	t.Helper()
	err := s.db.Update(func(txn *badger.Txn) error {
		m, err := getManifest(txn, key)
		if err != nil {
			return err
		}
		return corrupt(txn, m.gen)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBlobClosed(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 4)
	if err := s.PutBlob(ctx, "zip/a", strings.NewReader("abcdef"), 6); err != nil {
		t.Fatal(err)
	}
	b, err := s.OpenBlob(ctx, "zip/a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := b.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if _, err := b.Seek(0, io.SeekStart); err == nil {
		t.Error("Seek after Close succeeded")
	}
}

func TestOpenBlobNotFound(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 4)
	if err := s.Put(ctx, "zip/small", []byte("not a blob")); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"zip/absent", "zip/small"} {
		if _, err := s.OpenBlob(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenBlob(%q) = %v, want ErrNotFound", key, err)
		}
		if ok, err := s.HasBlob(ctx, key); ok || err != nil {
			t.Errorf("HasBlob(%q) = %v, %v; want false", key, ok, err)
		}
	}
}
