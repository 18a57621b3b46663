package proxy

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/cache"
)

// Metrics are the gate's Prometheus metrics. Its methods are safe on a nil
// *Metrics, which records nothing.
type Metrics struct {
	requests     *prometheus.CounterVec
	servedBytes  *prometheus.CounterVec
	fetchedBytes *prometheus.CounterVec
	upstream     *prometheus.HistogramVec
	verifyFails  *prometheus.CounterVec
	decisions    *prometheus.CounterVec
	connects     *prometheus.CounterVec
	readErrors   *prometheus.CounterVec
	prefetches   *prometheus.CounterVec
	mu           sync.Mutex
	summary      Summary // totals since start
}

// Summary is the gate's traffic since it started.
type Summary struct {
	Requests  int64 // every routed request
	Cacheable int64 // requests answered from the cache or the upstream
	Hits      int64 // of which from the cache
	Served    int64 // response body bytes
	Refused   int64 // answered 403, module requests and egress refusals
}

// NewMetrics registers the gate's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_requests_total", Help: "Requests served, by kind, status and cache result.",
		}, []string{"kind", "status", "cache", "via"}),
		servedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_served_bytes_total", Help: "Response body bytes served to clients, by kind.",
		}, []string{"kind"}),
		fetchedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_fetched_bytes_total", Help: "Bytes fetched from upstreams, by kind.",
		}, []string{"kind"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "modgate_upstream_duration_seconds", Help: "Upstream fetch latency, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"kind"}),
		verifyFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_verification_failures_total", Help: "Upstream answers refused by verification, by kind.",
		}, []string{"kind"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_policy_decisions_total",
			Help: "Module policy decisions, by action and rule; enforced is false for a denial that report mode let through.",
		}, []string{"action", "rule", "enforced"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_connect_total", Help: "CONNECT requests, by decision.",
		}, []string{"decision"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_cache_read_errors_total",
			Help: "Cached objects that could not be read back intact (I/O error, checksum), dropped and fetched again, by kind.",
		}, []string{"kind"}),
		prefetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_prefetch_total",
			Help: "go.mod files fetched ahead of the client (prefetch.go), by result: queued, dropped (queue full), " +
				"skipped (not plainly allowed), fetched, cached (held already), failed.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.requests, m.servedBytes, m.fetchedBytes, m.upstream, m.verifyFails, m.decisions, m.connects,
		m.readErrors, m.prefetches)
	return m
}

// request records a finished request.
func (m *Metrics) request(kind Kind, status int, cacheResult, via string, bytes int64) {
	if m == nil {
		return
	}
	k := string(kind)
	if k == "" {
		k = "invalid"
	}
	m.requests.WithLabelValues(k, strconv.Itoa(status), cacheResult, via).Inc()
	m.servedBytes.WithLabelValues(k).Add(float64(bytes))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.summary.Requests++
	m.summary.Served += bytes
	if status == http.StatusForbidden {
		m.summary.Refused++
	}
	if cacheResult == cacheHit || cacheResult == cacheMiss || cacheResult == cacheStale {
		m.summary.Cacheable++
		if cacheResult == cacheHit {
			m.summary.Hits++
		}
	}
}

// prefetched counts one step of a prefetch (see modgate_prefetch_total).
func (m *Metrics) prefetched(result string) {
	if m == nil {
		return
	}
	m.prefetches.WithLabelValues(result).Inc()
}

// fetched records one upstream fetch.
func (m *Metrics) fetched(kind Kind, d time.Duration, bytes int64) {
	if m == nil {
		return
	}
	m.upstream.WithLabelValues(string(kind)).Observe(d.Seconds())
	m.fetchedBytes.WithLabelValues(string(kind)).Add(float64(bytes))
}

// verifyFailed records an answer refused by verification.
func (m *Metrics) verifyFailed(kind string) {
	if m != nil {
		m.verifyFails.WithLabelValues(kind).Inc()
	}
}

// readError records a cached object dropped as unreadable.
func (m *Metrics) readError(kind Kind) {
	if m != nil {
		m.readErrors.WithLabelValues(string(kind)).Inc()
	}
}

// decided records a policy decision; enforced is false only for a denial
// that report mode let through (Decision.WouldDeny).
func (m *Metrics) decided(action, rule string, enforced bool) {
	if m != nil {
		m.decisions.WithLabelValues(action, rule, strconv.FormatBool(enforced)).Inc()
	}
}

// connect records a CONNECT decision ("intercept", "tunnel", "refuse").
func (m *Metrics) connect(decision string) {
	if m != nil {
		m.connects.WithLabelValues(decision).Inc()
	}
}

// egressRefused counts a CONNECT or plain http:// request that the egress
// refused (403) in the summary's Refused, which the terminal's progress
// line shows.
func (m *Metrics) egressRefused() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.summary.Refused++
}

// HitRatio is the share of cacheable requests served from the cache since
// start, and how many there were.
func (m *Metrics) HitRatio() (ratio float64, requests int64) {
	if m == nil {
		return 0, 0
	}
	s := m.Summary()
	if s.Cacheable == 0 {
		return 0, 0
	}
	return float64(s.Hits) / float64(s.Cacheable), s.Cacheable
}

// Summary returns the traffic since start.
func (m *Metrics) Summary() Summary {
	if m == nil {
		return Summary{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.summary
}

// StatsSource reports cache contents. *cache.Store satisfies it.
type StatsSource interface {
	Stats(ctx context.Context) (cache.Stats, error)
}

// SpaceSource reports the free space of the cache's filesystem.
// *cache.Store satisfies it; a StatsSource that also implements it gets
// the disk gauges exported.
type SpaceSource interface {
	Space() cache.Space
}

// WitnessState reports the witnessed tree. *signer.Witness satisfies it
// through WitnessGauge.
type WitnessState interface {
	Forked() bool
	TreeSize() int64
}

// gateCollector exports cache contents, the cache's free space and the
// witness state at scrape time. The cache keeps its statistics
// incrementally, so a scrape costs O(1) in the size of the cache (plus one
// statfs).
type gateCollector struct {
	stats    StatsSource
	witness  WitnessState
	objects  *prometheus.Desc
	bytes    *prometheus.Desc
	treeSize *prometheus.Desc
	forked   *prometheus.Desc
	free     *prometheus.Desc
	diskFull *prometheus.Desc
	refused  *prometheus.Desc
}

// NewCollector returns a collector of cache and witness gauges.
func NewCollector(stats StatsSource, w WitnessState) prometheus.Collector {
	return &gateCollector{
		stats: stats, witness: w,
		objects: prometheus.NewDesc("modgate_cache_objects", "Objects in the cache, by kind.", []string{"kind"}, nil),
		bytes:   prometheus.NewDesc("modgate_cache_bytes", "Bytes in the cache, by kind.", []string{"kind"}, nil),
		treeSize: prometheus.NewDesc("modgate_witness_tree_size",
			"Size of the newest witnessed checksum-database tree.", nil, nil),
		forked: prometheus.NewDesc("modgate_witness_forks_detected",
			"1 if fork evidence is on record (checksum-database traffic fails closed).", nil, nil),
		free: prometheus.NewDesc("modgate_cache_disk_free_bytes", "Bytes free on the cache's filesystem.", nil, nil),
		diskFull: prometheus.NewDesc("modgate_cache_disk_full",
			"1 while new objects are refused (507) for lack of space, a read-only filesystem or a failed statfs; "+
				"/readyz says degraded.",
			nil, nil),
		refused: prometheus.NewDesc("modgate_cache_disk_full_refusals_total",
			"Stores refused for lack of space since start (answered 507 cache disk full).", nil, nil),
	}
}

func (c *gateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.bytes
	ch <- c.treeSize
	ch <- c.forked
	ch <- c.free
	ch <- c.diskFull
	ch <- c.refused
}

func (c *gateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := c.stats.Stats(ctx)
	cancel()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.objects, err)
	}
	for kind, ks := range s.Kinds {
		ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(ks.Objects), kind)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(ks.Bytes), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.treeSize, prometheus.GaugeValue, float64(c.witness.TreeSize()))
	forked := 0.0
	if c.witness.Forked() {
		forked = 1
	}
	ch <- prometheus.MustNewConstMetric(c.forked, prometheus.GaugeValue, forked)
	if src, ok := c.stats.(SpaceSource); ok {
		sp := src.Space()
		full := 0.0
		if sp.Full() != "" {
			full = 1
		}
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(sp.Free))
		ch <- prometheus.MustNewConstMetric(c.diskFull, prometheus.GaugeValue, full)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(sp.Refused))
	}
}
