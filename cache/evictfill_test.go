package cache

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFillDir fills the cache in $MODGATE_FILL_DIR as scenario 8 of the
// bench does ($MODGATE_FILL_OBJECTS small objects, default 1,000,000: the
// .info and .mod of half as many versions, and one zip of 64 KiB per
// 1,000), for profiling an eviction pass by hand with TestEvictDir.
func TestFillDir(t *testing.T) {
	dir := os.Getenv("MODGATE_FILL_DIR")
	if dir == "" {
		t.Skip("MODGATE_FILL_DIR not set")
	}
	n := 1_000_000
	if v := os.Getenv("MODGATE_FILL_OBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Dir: dir, MaxSize: 1 << 40, ManualEviction: true, MinFree: FreeSpace{Bytes: 1}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	versions, zips := n/2, max(n/1000, 1)
	zip := make([]byte, 64<<10)
	crand.Read(zip)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < versions+zips; i = int(next.Add(1) - 1) {
				if err := fillVersion(ctx, s, i, versions, zip); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	objects, total := s.stats.totals()
	t.Logf("filled %d objects, %d bytes in %v", objects, total, time.Since(start))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func fillVersion(ctx context.Context, s *Store, i, versions int, zip []byte) error {
	if i >= versions {
		key := fmt.Sprintf("zip/example.com/z%04d/@v/v1.0.0", i-versions)
		return s.PutBlobMarked(ctx, key, bytes.NewReader(zip), int64(len(zip)), 1)
	}
	v := fmt.Sprintf("example.com/m%07d/@v/v1.0.0", i)
	info := fmt.Sprintf(`{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z","Origin":{"VCS":"git","Hash":"%040d"}}`, i)
	mod := fmt.Sprintf("module example.com/m%07d\n\ngo 1.22\n\nrequire (\n\tgolang.org/x/mod v0.20.0\n"+
		"\tgolang.org/x/sync v0.8.0\n\tgolang.org/x/text v0.17.0\n)\n", i)
	if err := s.Put(ctx, "info/"+v, []byte(info)); err != nil {
		return err
	}
	return s.PutMarked(ctx, "mod/"+v, []byte(mod), 1)
}
