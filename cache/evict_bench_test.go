package cache

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// tickClock is a Config.Now for concurrent writers: every call returns a
// later time than the one before.
type tickClock struct{ n atomic.Int64 }

func (c *tickClock) now() time.Time { return testEpoch.Add(time.Duration(c.n.Add(1))) }

// BenchmarkEvict measures one eviction pass that frees 10% of a store of n
// objects (1 KiB values, all evictable), filled through Put. Each
// iteration puts back what the previous one evicted, outside the timer.
// The pass reads the access-order index from its oldest record, so its
// cost and allocations follow the objects it evicts (n/10), not n: the
// ns/evicted metric stays about flat as n grows. MODGATE_BENCH_MILLION=1
// adds n = 1,000,000.
func BenchmarkEvict(b *testing.B) {
	sizes := []int{1_000, 10_000, 100_000}
	if os.Getenv("MODGATE_BENCH_MILLION") != "" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			benchEvict(b, n)
		})
	}
}

func benchEvict(b *testing.B, n int) {
	ctx := context.Background()
	const size = 1 << 10
	clock := &tickClock{}
	s := openStore(b, Config{Dir: b.TempDir(), MaxSize: int64(n)*size - 1,
		ManualEviction: true, GCInterval: -1, Now: clock.now})
	value := pattern(size, 1)
	all := make([]string, n)
	for i := range all {
		all[i] = fmt.Sprintf("mod/example.com/m%07d/@v/v1.0.0.mod", i)
	}
	if err := putAll(ctx, s, all, value); err != nil {
		b.Fatal(err)
	}
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
			if ok, err := s.has(k); err != nil {
				b.Fatal(err)
			} else if !ok {
				missing = append(missing, k)
			}
		}
		if err := putAll(ctx, s, missing, value); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(evicted)/float64(b.N), "evicted/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(evicted, 1)), "ns/evicted")
}

// putAll stores value under every key through Put, from 8 goroutines.
func putAll(ctx context.Context, s *Store, keys []string, value []byte) error {
	var wg sync.WaitGroup
	var next atomic.Int64
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(keys)); i = next.Add(1) - 1 {
				if err := s.Put(ctx, keys[i], value); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// has reports whether key holds a small value, without noting an access.
func (s *Store) has(key string) (bool, error) {
	var size int64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		size, err = valueSize(txn, key)
		return err
	})
	return size >= 0, err
}
