package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/cache"
)

// Scenario 8: a cache of a million objects, against the same measures on a
// cache of 10,000 (side by side in one run). Each cache is filled through
// the cache API in this process (half .info, half .mod files of
// objects/2 module versions, plus one zip of 64 KiB per 1,000 of them:
// 1,000 zips for a million), then:
//
//   - opened in this process: Open's time, and a cache hit's latency
//     through the API (Get of random keys, p50 and p99);
//   - served by the real binary (--cache-max-size above its size, so
//     access tracking is on): the time from exec to serving, RSS idle,
//     a /metrics scrape, and a cache hit's latency through the GOPROXY
//     endpoint (one keep-alive client, random keys, p50 and p99);
//   - migrated: opened unbounded (which drops the index) and then bounded
//     again, which builds the access-order index at Open;
//   - evicted in this process: one pass that frees 10% (MaxSize just
//     under the content), started once the process has settled, its
//     time, the bytes the process allocated during it and its peak of
//     live heap (both judged), and what Badger allocated after it.
//
// It needs neither the fixture nor the network: its gates point at an
// upstream that is never asked.

const (
	millionZipEvery = 1000 // small objects per zip
	millionZipSize  = 64 << 10
	millionMaxSize  = 1 << 40 // above any content: tracking on, no eviction
	millionHits     = 2000    // requests per side and round
	millionScrapes  = 20
	millionBaseSize = 10_000
)

// cacheSide is one cache of the scenario.
type cacheSide struct {
	n        int
	dir      string // the gate's data directory; the cache is dir/cache
	versions int
	zips     int
	fill     time.Duration
	bytes    int64
}

func (c *cacheSide) cacheDir() string { return filepath.Join(c.dir, "cache") }

func (c *cacheSide) version(i int) string { return fmt.Sprintf("example.com/m%07d/@v/v1.0.0", i) }

// million runs scenario 8.
func (b *runner) million(ctx context.Context) error {
	sides := []*cacheSide{{n: millionBaseSize}, {n: b.o.objects}}
	for _, c := range sides {
		c.zips = max(c.n/millionZipEvery, 1)
		c.dir = filepath.Join(b.dir(fmt.Sprintf("million-%d", c.n)), "data")
		if err := fillCache(ctx, c); err != nil {
			return err
		}
		b.logf("filled a cache of %d objects and %d zips (%s) in %v", c.n, c.zips,
			mib(c.bytes>>10), c.fill.Round(time.Millisecond))
	}
	if err := b.millionInProcess(ctx, sides); err != nil {
		return err
	}
	if err := b.millionGates(ctx, sides); err != nil {
		return err
	}
	if err := b.millionMigrate(ctx, sides[1]); err != nil {
		return err
	}
	return b.millionEvict(ctx, sides)
}

// fillCache writes c's objects through the cache API from 8 goroutines.
func fillCache(ctx context.Context, c *cacheSide) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	s, err := cache.Open(ctx, cache.Config{Dir: c.cacheDir(), MaxSize: millionMaxSize, ManualEviction: true,
		MinFree: cache.FreeSpace{Bytes: 1}})
	if err != nil {
		return err
	}
	defer s.Close()
	start := time.Now()
	c.versions = c.n / 2
	zip := make([]byte, millionZipSize)
	crand.Read(zip)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < c.versions+c.zips; i = int(next.Add(1) - 1) {
				if err := putVersion(ctx, s, c, i, zip); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	c.fill = time.Since(start)
	st, err := s.Stats(ctx)
	c.bytes = st.TotalBytes
	return err
}

// putVersion stores the .info and .mod of version i, or zip i-versions.
func putVersion(ctx context.Context, s *cache.Store, c *cacheSide, i int, zip []byte) error {
	if i >= c.versions {
		key := fmt.Sprintf("zip/example.com/z%04d/@v/v1.0.0", i-c.versions)
		return s.PutBlobMarked(ctx, key, bytes.NewReader(zip), int64(len(zip)), 1)
	}
	v := c.version(i)
	info := fmt.Sprintf(`{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z","Origin":{"VCS":"git","Hash":"%040d"}}`, i)
	mod := fmt.Sprintf("module example.com/m%07d\n\ngo 1.22\n\nrequire (\n\tgolang.org/x/mod v0.20.0\n"+
		"\tgolang.org/x/sync v0.8.0\n\tgolang.org/x/text v0.17.0\n)\n", i)
	if err := s.Put(ctx, "info/"+v, []byte(info)); err != nil {
		return err
	}
	return s.PutMarked(ctx, "mod/"+v, []byte(mod), 1) // 1: verified against the checksum database
}

// millionInProcess measures Open and Get on both caches, opened together.
func (b *runner) millionInProcess(ctx context.Context, sides []*cacheSide) error {
	stores := make([]*cache.Store, len(sides))
	opens := make([]time.Duration, len(sides))
	for i, c := range sides {
		start := time.Now()
		s, err := cache.Open(ctx, cache.Config{Dir: c.cacheDir(), MaxSize: millionMaxSize, ManualEviction: true})
		if err != nil {
			return err
		}
		defer s.Close()
		stores[i], opens[i] = s, time.Since(start).Round(time.Millisecond)
	}
	met := opens[1] <= 5*time.Second
	b.add("8a", fmt.Sprintf("opening the cache of %d objects (cache.Open, in process)", sides[1].n),
		fmt.Sprintf("%v (%d objects: %v)", opens[1], sides[0].n, opens[0]), "≤ 5 s", &met)
	lat := make([][]time.Duration, len(sides))
	for round := range b.o.runs {
		for j := range sides {
			i := (round + j) % len(sides)
			c, s := sides[i], stores[i]
			for range millionHits {
				k := rand.IntN(c.versions)
				key := "mod/" + c.version(k)
				if k%2 == 0 {
					key = "info/" + c.version(k)
				}
				t0 := time.Now()
				if _, err := s.Get(ctx, key); err != nil {
					return err
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}
	}
	b.addLatency("8b", "cache hit latency through the cache API (Get, random keys)", sides, lat)
	return nil
}

// addLatency adds the row comparing the p50 and p99 of the two sides.
func (b *runner) addLatency(id, what string, sides []*cacheSide, lat [][]time.Duration) {
	p := func(i int, q float64) time.Duration { return percentile(lat[i], q) }
	r50 := float64(p(1, 0.50)) / float64(p(0, 0.50))
	r99 := float64(p(1, 0.99)) / float64(p(0, 0.99))
	met := r50 <= 1.5 && r99 <= 1.5
	b.add(id, fmt.Sprintf("%s, %d objects ÷ %d", what, sides[1].n, sides[0].n),
		fmt.Sprintf("p50 %.2f (%v ÷ %v), p99 %.2f (%v ÷ %v)", r50, p(1, 0.5), p(0, 0.5), r99, p(1, 0.99), p(0, 0.99)),
		"≤ 1.5 each", &met)
}

// percentile returns the q-quantile of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// millionGates runs the binary on both caches at once and measures start,
// RSS, /metrics and hits through the GOPROXY endpoint.
func (b *runner) millionGates(ctx context.Context, sides []*cacheSide) error {
	up, err := neverAskedUpstream()
	if err != nil {
		return err
	}
	gates := make([]*gateProc, len(sides))
	for i, c := range sides {
		start := time.Now()
		g, err := startGate(ctx, b.bin, filepath.Dir(c.dir), up.gateArgs(), "--cache-max-size", fmt.Sprint(millionMaxSize))
		if err != nil {
			return err
		}
		defer g.stop()
		gates[i] = g
		b.logf("modgate on the cache of %d objects ready in %v", c.n, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(3 * time.Second)
	if err := b.millionIdle(gates, sides); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	lat := make([][]time.Duration, len(sides))
	for round := range b.o.runs {
		for j := range sides {
			i := (round + j) % len(sides)
			c, g := sides[i], gates[i]
			for range millionHits {
				k := rand.IntN(c.versions)
				url := "http://" + g.listen + "/" + strings.TrimSuffix(c.version(k), "/@v/v1.0.0") + "/@v/v1.0.0.mod"
				if k%2 == 0 {
					url = strings.TrimSuffix(url, ".mod") + ".info"
				}
				t0 := time.Now()
				if err := getOK(ctx, client, url); err != nil {
					return err
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}
	}
	b.addLatency("8c", "cache hit latency through the GOPROXY endpoint (1 keep-alive client)", sides, lat)
	return nil
}

// millionIdle measures RSS and /metrics of the idle gates.
func (b *runner) millionIdle(gates []*gateProc, sides []*cacheSide) error {
	var rss []string
	for i, g := range gates {
		m, err := g.mem()
		if err != nil {
			return err
		}
		rss = append(rss, fmt.Sprintf("%s (anon %s, file %s)", mib(m.RSS), mib(m.Anon), mib(m.File)))
		if i == len(gates)-1 {
			met := m.RSS <= 200<<10
			b.add("8d", fmt.Sprintf("RSS of modgate idle with the cache of %d objects open", sides[i].n),
				fmt.Sprintf("%s; with %d objects: %s", rss[i], sides[0].n, rss[0]), "≤ 200 MiB", &met)
		}
	}
	var scrapes [][]time.Duration
	for _, g := range gates {
		// One scrape first, which registers the lazily built collectors.
		if err := getOK(context.Background(), http.DefaultClient, "http://"+g.admin+"/metrics"); err != nil {
			return err
		}
		var ds []time.Duration
		for range millionScrapes {
			t0 := time.Now()
			if err := getOK(context.Background(), http.DefaultClient, "http://"+g.admin+"/metrics"); err != nil {
				return err
			}
			ds = append(ds, time.Since(t0))
		}
		scrapes = append(scrapes, ds)
	}
	worst := slices.Max(scrapes[1])
	met := percentile(scrapes[1], 0.5) <= 10*time.Millisecond
	b.add("8e", fmt.Sprintf("a /metrics scrape with the cache of %d objects (%d scrapes)", sides[1].n, millionScrapes),
		fmt.Sprintf("median %v, max %v; with %d objects: median %v", percentile(scrapes[1], 0.5), worst,
			sides[0].n, percentile(scrapes[0], 0.5)), "≤ 10 ms (median)", &met)
	return nil
}

// evictRun is what one eviction pass of scenario 8 measured.
type evictRun struct {
	st      cache.EvictStats
	waited  time.Duration // for Badger's work left from before the pass
	alloc   uint64        // bytes the process allocated during the pass
	after   uint64        // and after it, until Badger's work it caused was done
	settled time.Duration // how long that took
	peak    uint64        // highest live heap over the pass, above the one before
}

// millionEvict measures one pass that frees 10% of each cache. Both
// figures are judged against the 32 MiB target: the bytes the whole
// process allocated during the pass (runtime TotalAlloc, Badger's
// background work included), and the peak of the live heap. The pass
// starts once the process has settled, so that compactions left from
// the scenarios before (the migration writes two records per object) are
// not counted; the allocation after the pass until the process settles
// again (the flush and compaction of the pass's own tombstones) is
// reported beside it.
func (b *runner) millionEvict(ctx context.Context, sides []*cacheSide) error {
	var parts []string
	var last evictRun
	for _, c := range sides {
		r, err := evictOnce(ctx, c)
		if err != nil {
			return err
		}
		last = r
		perObject := float64(r.st.Duration.Nanoseconds()) / float64(max(r.st.Evicted, 1))
		parts = append(parts, fmt.Sprintf("%d objects: %d evicted (%s) in %v, %.1f µs each, allocated %s "+
			"(%.0f B per evicted object; %s more until settled, %v), live heap +%s (waited %v for the store to settle)",
			c.n, r.st.Evicted, mib(r.st.EvictedBytes>>10), r.st.Duration.Round(time.Millisecond), perObject/1e3,
			mib(int64(r.alloc>>10)), float64(r.alloc)/float64(max(r.st.Evicted, 1)), mib(int64(r.after>>10)),
			r.settled.Round(time.Second), mib(int64(r.peak>>10)), r.waited.Round(time.Second)))
	}
	met := last.alloc <= 32<<20 && last.peak <= 32<<20
	b.add("8f", "one eviction pass freeing 10% of the bytes (access-order index, then value log GC)",
		strings.Join(parts, "; "), "allocated ≤ 32 MiB and live heap ≤ 32 MiB; cost per evicted object flat", &met)
	return nil
}

// evictOnce opens c's cache with MaxSize just under its content and runs
// one pass.
func evictOnce(ctx context.Context, c *cacheSide) (evictRun, error) {
	var r evictRun
	s, err := cache.Open(ctx, cache.Config{Dir: c.cacheDir(), MaxSize: c.bytes - 1, ManualEviction: true,
		MinFree: cache.FreeSpace{Bytes: 1}})
	if err != nil {
		return r, err
	}
	defer s.Close()
	r.waited = settle()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	stop := make(chan struct{})
	peak := sampleHeap(stop)
	r.st, err = s.Evict(ctx)
	close(stop)
	runtime.ReadMemStats(&after)
	if err != nil {
		return r, err
	}
	base := live[0].Value.Uint64()
	r.alloc, r.peak = after.TotalAlloc-before.TotalAlloc, max(<-peak, base)-base
	r.settled = settle()
	var settled runtime.MemStats
	runtime.ReadMemStats(&settled)
	r.after = settled.TotalAlloc - after.TotalAlloc
	return r, nil
}

// settle waits until the process allocates less than 1 MiB in a second
// (Badger's flushes and compactions allocate table builders and arenas
// as they run), at most two minutes, and returns the time it waited.
func settle() time.Duration {
	start := time.Now()
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(sample)
	prev := sample[0].Value.Uint64()
	for time.Since(start) < 2*time.Minute {
		time.Sleep(time.Second)
		metrics.Read(sample)
		cur := sample[0].Value.Uint64()
		if cur-prev < 1<<20 {
			break
		}
		prev = cur
	}
	return time.Since(start)
}

// sampleHeap reports the highest live heap (as the last GC marked it)
// seen every millisecond until stop is closed.
func sampleHeap(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(sample)
			peak = max(peak, sample[0].Value.Uint64())
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// millionMigrate measures building the access-order index of c at Open,
// on the layout of a cache from before the index: its records and marker
// dropped with Badger directly (the a/ records stay, as a bounded cache
// of before had them).
func (b *runner) millionMigrate(ctx context.Context, c *cacheSide) error {
	db, err := badger.Open(badger.DefaultOptions(c.cacheDir()).WithLogger(nil).
		WithValueLogFileSize(cache.DefaultValueLogFileSize))
	if err != nil {
		return err
	}
	err = db.DropPrefix([]byte("t/"), []byte("m/"))
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	start := time.Now()
	s, err := cache.Open(ctx, cache.Config{Dir: c.cacheDir(), MaxSize: millionMaxSize, ManualEviction: true})
	if err != nil {
		return err
	}
	d := time.Since(start)
	st, err := s.Stats(ctx)
	s.Close()
	if err != nil {
		return err
	}
	b.add("8g", "opening a cache without the access-order index (built once, at Open)",
		fmt.Sprintf("%v for %d objects (%d kept)", d.Round(time.Millisecond), c.n, st.TotalObjects), "report", nil)
	return nil
}

// neverAskedUpstream is an upstream at a closed port with a fresh
// checksum-database key: the cached objects of scenario 8 never reach it.
func neverAskedUpstream() (*upstream, error) {
	_, vkey, err := note.GenerateKey(crand.Reader, "sum.golang.org")
	if err != nil {
		return nil, err
	}
	return &upstream{url: "http://127.0.0.1:9", sumdb: vkey + " http://127.0.0.1:9"}, nil
}

// getOK GETs url and reads its body; anything but 200 is an error.
func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
