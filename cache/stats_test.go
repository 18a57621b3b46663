package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestStats(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		small map[string]int // key: value size
		blobs map[string]int // key: content size
		want  Stats
	}{
		{"empty", nil, nil, Stats{Kinds: map[string]KindStats{}}},
		{
			"by kind",
			map[string]int{"mod/a/@v/v1.mod": 5, "mod/b/@v/v1.mod": 7, "info/a/@v/v1.info": 3, "witness": 2, "list/a": 0},
			map[string]int{"zip/a/@v/v1.zip": 10, "zip/b/@v/v1.zip": 0, "mod/big": 9},
			Stats{
				Kinds: map[string]KindStats{
					"mod":     {Objects: 3, Bytes: 21},
					"info":    {Objects: 1, Bytes: 3},
					"witness": {Objects: 1, Bytes: 2},
					"list":    {Objects: 1, Bytes: 0},
					"zip":     {Objects: 2, Bytes: 10},
				},
				TotalObjects: 8,
				TotalBytes:   36,
			},
		},
		{
			"same key small and blob",
			map[string]int{"zip/a": 4},
			map[string]int{"zip/a": 6},
			Stats{Kinds: map[string]KindStats{"zip": {Objects: 2, Bytes: 10}}, TotalObjects: 2, TotalBytes: 10},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(t, 4)
			for k, n := range tt.small {
				if err := s.Put(ctx, k, pattern(n, 1)); err != nil {
					t.Fatal(err)
				}
			}
			for k, n := range tt.blobs {
				if err := s.PutBlob(ctx, k, bytes.NewReader(pattern(n, 2)), int64(n)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Stats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Stats = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

// TestStatsLargeSmallValue checks the estimate for a small value that Badger
// keeps in its value log.
func TestStatsLargeSmallValue(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Config{Dir: t.TempDir()})
	const size = 200 << 10
	if err := s.Put(ctx, "list/big", pattern(size, 1)); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Kinds["list"].Bytes; got < size-16 || got > size+16 {
		t.Errorf("Bytes = %d, want %d within a few bytes", got, size)
	}
}

func TestScanBlobs(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 4)
	sizes := map[string]int{"zip/b": 9, "zip/a": 3, "zipx": 1, "mod/a": 5}
	for k, n := range sizes {
		if err := s.PutBlob(ctx, k, bytes.NewReader(pattern(n, byte(n))), int64(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "zip/small", []byte("not a blob")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"zip/", []string{"zip/a", "zip/b"}},
		{"zip", []string{"zip/a", "zip/b", "zipx"}},
		{"", []string{"mod/a", "zip/a", "zip/b", "zipx"}},
		{"info/", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			var got []string
			err := s.ScanBlobs(ctx, tt.prefix, func(key string, info BlobInfo) error {
				n := sizes[key]
				if info.Size != int64(n) || info.SHA256 != sha256.Sum256(pattern(n, byte(n))) || !info.Stored.Equal(testEpoch) {
					t.Errorf("info of %q = %+v", key, info)
				}
				got = append(got, key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("keys = %q, want %q", got, tt.want)
			}
		})
	}
	stop := errors.New("stop")
	if err := s.ScanBlobs(ctx, "", func(string, BlobInfo) error { return stop }); err != stop {
		t.Errorf("ScanBlobs = %v, want the callback's error", err)
	}
}
