package cache

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkEvict measures one eviction pass over a store of n objects
// (1 KiB values, all evictable) that is 10% over MaxSize after the low-water
// mark: the pass scans every object and deletes about n/5 of them. Each
// iteration refills what the previous one evicted, outside the timer. The
// ns/object metric shows how the cost grows with the size of the cache.
func BenchmarkEvict(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			benchEvict(b, n)
		})
	}
}

func benchEvict(b *testing.B, n int) {
	ctx := context.Background()
	const size = 1 << 10
	clock := &fakeClock{t: testEpoch}
	s := openStore(b, Config{Dir: b.TempDir(), MaxSize: int64(n) * size * 10 / 11,
		ManualEviction: true, GCInterval: -1, Now: clock.now})
	value := pattern(size, 1)
	key := func(i int) string { return fmt.Sprintf("mod/example.com/m%07d/@v/v1.0.0.mod", i) }
	fill := func(keys []string) {
		wb := s.db.NewWriteBatch() // bulk load; Put's path is measured elsewhere
		defer wb.Cancel()
		for _, k := range keys {
			clock.t = clock.t.Add(time.Millisecond)
			if err := wb.Set(valueKey(k), encodeValue(value, clock.t)); err != nil {
				b.Fatal(err)
			}
			if err := wb.Set(accessKey(k), encodeAccess(clock.t)); err != nil {
				b.Fatal(err)
			}
		}
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	all := make([]string, n)
	for i := range all {
		all[i] = key(i)
	}
	fill(all)
	b.ReportAllocs()
	b.ResetTimer()
	var evicted int
	for i := 0; i < b.N; i++ {
		st, err := s.Evict(ctx)
		if err != nil {
			b.Fatal(err)
		}
		evicted += st.Evicted
		b.StopTimer()
		var missing []string
		for _, k := range all {
			if _, err := s.Get(ctx, k); err != nil {
				missing = append(missing, k)
			}
		}
		fill(missing)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/object")
	b.ReportMetric(float64(evicted)/float64(b.N), "evicted/op")
}
