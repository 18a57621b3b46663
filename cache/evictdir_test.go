package cache

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"
)

// TestEvictDir runs one eviction pass (10% of the bytes) on the cache in
// $MODGATE_EVICT_DIR, for profiling a large cache by hand.
func TestEvictDir(t *testing.T) {
	dir := os.Getenv("MODGATE_EVICT_DIR")
	if dir == "" {
		t.Skip("MODGATE_EVICT_DIR not set")
	}
	ctx := context.Background()
	start := time.Now()
	s, err := Open(ctx, Config{Dir: dir, MaxSize: 1 << 40, ManualEviction: true, MinFree: FreeSpace{Bytes: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_, total := s.stats.totals()
	t.Logf("open %v, %d bytes", time.Since(start), total)
	s.maxSize = total - 1
	var before, after runtime.MemStats
	runtime.GC()
	writeAllocs(t, "before")
	runtime.ReadMemStats(&before)
	st, err := s.Evict(ctx)
	runtime.ReadMemStats(&after)
	t.Logf("evict %+v %v; allocated %d MiB", st, err, (after.TotalAlloc-before.TotalAlloc)>>20)
	runtime.GC()
	writeAllocs(t, "after")
	s.Close()
}

// writeAllocs writes the allocation profile to $MODGATE_EVICT_PROFILE.name
// (diff two with go tool pprof -sample_index=alloc_space -base).
func writeAllocs(t *testing.T, name string) {
	prefix := os.Getenv("MODGATE_EVICT_PROFILE")
	if prefix == "" {
		return
	}
	runtime.GC()
	runtime.GC() // the profile shows the allocations up to the last GC
	f, err := os.Create(prefix + "." + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}

// TestGetDir reads random keys of the bench's million-object cache in
// $MODGATE_EVICT_DIR, for profiling Get by hand.
func TestGetDir(t *testing.T) {
	dir := os.Getenv("MODGATE_EVICT_DIR")
	if dir == "" {
		t.Skip("MODGATE_EVICT_DIR not set")
	}
	ctx := context.Background()
	s, err := Open(ctx, Config{Dir: dir, MaxSize: 1 << 40, ManualEviction: true, MinFree: FreeSpace{Bytes: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ds []time.Duration
	for i := range 20000 {
		k := fmt.Sprintf("mod/example.com/m%07d/@v/v1.0.0", (i*7919)%390000+100000)
		t0 := time.Now()
		if _, err := s.Get(ctx, k); err != nil {
			t.Fatal(k, err)
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	t.Logf("p50 %v p99 %v", ds[len(ds)/2], ds[len(ds)*99/100])
}
