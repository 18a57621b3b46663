package admin

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/modgate/modgate/cache"
)

// CacheStats is the answer of GET /api/v1/cache/stats.
type CacheStats struct {
	Kinds        map[string]KindCount `json:"kinds"`
	TotalObjects int64                `json:"total_objects"`
	TotalBytes   int64                `json:"total_bytes"`
	// HitRatio is the share of module and checksum-database requests
	// served from the cache since the gate started, out of Requests.
	HitRatio float64 `json:"hit_ratio"`
	Requests int64   `json:"requests"`
}

// KindCount is the objects and bytes of one kind of cached object.
type KindCount struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// StatsSource reports cache contents. *cache.Store satisfies it.
type StatsSource interface {
	Stats(ctx context.Context) (cache.Stats, error)
}

// Traffic reports the gate's cache hit ratio since start: the share of
// cacheable requests served from the cache, and how many there were.
// *proxy.Metrics satisfies it (a nil one reports 0, 0).
type Traffic interface {
	HitRatio() (ratio float64, requests int64)
}

// CacheAPI serves the cache statistics of the admin API.
type CacheAPI struct {
	Stats   StatsSource
	Traffic Traffic
}

// Register adds GET /api/v1/cache/stats to mux.
func (a CacheAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/cache/stats", a.serveStats)
}

func (a CacheAPI) serveStats(w http.ResponseWriter, r *http.Request) {
	s, err := a.Stats.Stats(r.Context())
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(map[string]string{"error": "reading cache statistics: " + err.Error()})
		return
	}
	out := CacheStats{Kinds: map[string]KindCount{}, TotalObjects: s.TotalObjects, TotalBytes: s.TotalBytes}
	for kind, ks := range s.Kinds {
		out.Kinds[kind] = KindCount{Objects: ks.Objects, Bytes: ks.Bytes}
	}
	out.HitRatio, out.Requests = a.Traffic.HitRatio()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
