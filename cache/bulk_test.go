package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestPutBlobsMarked(t *testing.T) {
	ctx := context.Background()
	const cs = 16
	contents := [][]byte{pattern(0, 1), pattern(cs, 2), pattern(5*cs+3, 3), pattern(2*cs-1, 4)}
	open := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	errOpen := errors.New("cannot open")
	tests := []struct {
		name    string
		bad     int // index of the blob that fails, or -1
		size    func(int64) int64
		open    func([]byte) func() (io.ReadCloser, error)
		wantErr error
	}{
		{"all stored", -1, func(n int64) int64 { return n }, open, nil},
		{"one too short", 2, func(n int64) int64 { return n + 1 }, open, ErrSizeMismatch},
		{"one too long", 2, func(n int64) int64 { return n - 1 }, open, ErrSizeMismatch},
		{"one not opened", 1, func(n int64) int64 { return n },
			func([]byte) func() (io.ReadCloser, error) {
				return func() (io.ReadCloser, error) { return nil, errOpen }
			}, errOpen},
	}
	for _, tt := range tests {
		for _, workers := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%s/workers=%d", tt.name, workers), func(t *testing.T) {
				s := newMemStore(t, cs)
				blobs := make([]BulkBlob, len(contents))
				for i, c := range contents {
					blobs[i] = BulkBlob{Key: fmt.Sprintf("zip/example.com/m%d/@v/v1.0.0.zip", i),
						Size: int64(len(c)), Mark: 2, Open: open(c)}
					if i == tt.bad {
						blobs[i].Size, blobs[i].Open = tt.size(int64(len(c))), tt.open(c)
					}
				}
				err := s.PutBlobsMarked(ctx, blobs, workers)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("PutBlobsMarked: %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr != nil {
					for _, b := range blobs {
						if ok, err := s.HasBlob(ctx, b.Key); err != nil || ok {
							t.Errorf("HasBlob(%s) = %v, %v after a failed bulk write", b.Key, ok, err)
						}
					}
					if n := countChunks(t, s); n != 0 {
						t.Errorf("%d chunks left after a failed bulk write", n)
					}
					return
				}
				for i, b := range blobs {
					checkBlob(t, s, b.Key, contents[i])
					blob, err := s.OpenBlob(ctx, b.Key)
					if err != nil {
						t.Fatal(err)
					}
					if blob.Mark() != 2 {
						t.Errorf("%s: mark %d, want 2", b.Key, blob.Mark())
					}
					blob.Close()
				}
			})
		}
	}
}

func TestPutBlobsMarkedRefusesUnknownSize(t *testing.T) {
	s := newMemStore(t, 16)
	err := s.PutBlobsMarked(context.Background(), []BulkBlob{{Key: "zip/a/@v/v1.0.0.zip", Size: -1,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(nil)), nil }}}, 1)
	if !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("PutBlobsMarked: %v, want ErrSizeMismatch", err)
	}
}

// BenchmarkBulkBlobs compares storing the zips of a bundle import (64
// blobs of 1.1 MiB on disk) one PutBlobMarked at a time on two workers, as
// the import did, with one PutBlobsMarked.
func BenchmarkBulkBlobs(b *testing.B) {
	ctx := context.Background()
	content := pattern(1<<20+100<<10, 7)
	blobs := make([]BulkBlob, 64)
	for i := range blobs {
		blobs[i] = BulkBlob{Key: fmt.Sprintf("zip/example.com/m%d/@v/v1.0.0.zip", i), Size: int64(len(content)),
			Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }}
	}
	b.Run("PutBlobMarked", func(b *testing.B) {
		s := openStore(b, Config{Dir: b.TempDir(), MinFree: FreeSpace{Bytes: 1}})
		for b.Loop() {
			jobs := make(chan BulkBlob)
			errs := make(chan error, len(blobs))
			for range 2 {
				go func() {
					for bl := range jobs {
						errs <- s.PutBlobMarked(ctx, bl.Key, bytes.NewReader(content), bl.Size, 0)
					}
				}()
			}
			for _, bl := range blobs {
				jobs <- bl
			}
			close(jobs)
			for range blobs {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("PutBlobsMarked", func(b *testing.B) {
		s := openStore(b, Config{Dir: b.TempDir(), MinFree: FreeSpace{Bytes: 1}})
		for b.Loop() {
			if err := s.PutBlobsMarked(ctx, blobs, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
