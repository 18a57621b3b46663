package cache

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFile returns this process's file-backed resident memory in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

func TestBlobPagesLeaveTheResidentSet(t *testing.T) {
	const size = 48 << 20
	content := pattern(size, 7)
	tests := []struct {
		name     string
		keep     bool
		min, max int64 // bounds on the growth of RssFile
	}{
		{"dropped", false, 0, 16 << 20},
		{"kept", true, 40 << 20, 1 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s := openStore(t, Config{Dir: t.TempDir(), KeepPagesResident: tt.keep, ValueLogFileSize: 128 << 20, GCInterval: -1})
			before := rssFile(t)
			if err := s.PutBlob(ctx, "zip/example.com/big/@v/v1.0.0.zip", bytes.NewReader(content), size); err != nil {
				t.Fatal(err)
			}
			if got := readBlob(t, s, "zip/example.com/big/@v/v1.0.0.zip"); !bytes.Equal(got, content) {
				t.Fatal("blob read back differs")
			}
			grew := rssFile(t) - before
			if grew < tt.min || grew > tt.max {
				t.Errorf("RssFile grew by %d MiB writing and reading a %d MiB blob, want between %d and %d MiB",
					grew>>20, size>>20, tt.min>>20, tt.max>>20)
			}
		})
	}
}
