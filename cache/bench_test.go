package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
)

func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s := newMemStore(b, 0)
	value := pattern(512, 1)
	const keys = 1000
	for i := range keys {
		if err := s.Put(ctx, fmt.Sprintf("info/example.com/m%d/@v/v1.0.0.info", i), value); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, fmt.Sprintf("info/example.com/m%d/@v/v1.0.0.info", i%keys)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	s := newMemStore(b, 0)
	value := pattern(512, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, fmt.Sprintf("info/example.com/m%d/@v/v1.0.0.info", i%1000), value); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkBlobRead reads a 4 MiB blob as the gate serves a cached zip:
// "verified" checks all of it first (Blob.Verify), "stream" reads only.
func BenchmarkBlobRead(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, Config{Dir: b.TempDir()})
	content := pattern(4<<20+123, 1)
	const key = "zip/example.com/m/@v/v1.0.0.zip"
	if err := s.PutBlob(ctx, key, bytes.NewReader(content), int64(len(content))); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	for _, verify := range []bool{false, true} {
		name := "stream"
		if verify {
			name = "verified"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(content)))
			for b.Loop() {
				blob, err := s.OpenBlob(ctx, key)
				if err != nil {
					b.Fatal(err)
				}
				if verify {
					if err := blob.Verify(); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{blob}, buf); err != nil {
					b.Fatal(err)
				}
				blob.Close()
			}
		})
	}
}

// BenchmarkPutDisk stores small values in an on-disk store: the free-space
// admission (one statfs) and the read of the replaced value's size
// included.
func BenchmarkPutDisk(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, Config{Dir: b.TempDir(), MinFree: FreeSpace{Bytes: 1}})
	value := pattern(512, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Put(ctx, fmt.Sprintf("info/example.com/m%d/@v/v1.0.0.info", i%1000), value); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStats shows that Stats (a /metrics scrape) costs the same
// whatever the number of objects.
func BenchmarkStats(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{100, 20000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			s := newMemStore(b, 0)
			for i := range n {
				if err := s.Put(ctx, fmt.Sprintf("%s/example.com/m%d", []string{"mod", "info", "zip"}[i%3], i), []byte("x")); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Stats(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPutBlob(b *testing.B) {
	ctx := context.Background()
	s := openStore(b, Config{Dir: b.TempDir()})
	content := pattern(4<<20, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		err := s.PutBlob(ctx, "zip/example.com/m/@v/v1.0.0.zip", bytes.NewReader(content), int64(len(content)))
		if err != nil {
			b.Fatal(err)
		}
	}
}
