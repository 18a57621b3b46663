package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/module"
)

// scrape returns the value of the first sample of /metrics whose line
// starts with prefix (name and labels), or -1.
func scrape(t *testing.T, g *gateProc, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// TestMetricsMoveAfterDownload checks that /metrics counts a real download.
func TestMetricsMoveAfterDownload(t *testing.T) {
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	series := []string{
		`modgate_requests_total{cache="miss",kind="zip",status="200",via="intercept"}`,
		`modgate_requests_total{cache="hit",kind="tile"`,
		`modgate_served_bytes_total{kind="zip"}`,
		`modgate_fetched_bytes_total{kind="zip"}`,
		`modgate_fetched_bytes_total{kind="sumdb"}`,
		`modgate_upstream_duration_seconds_count{kind="mod"}`,
		`modgate_cache_objects{kind="zip"}`,
	}
	if size := scrape(t, g, `modgate_witness_tree_size`); size <= 0 { // witnessed by the poll at start
		t.Errorf("modgate_witness_tree_size %v before any client, want the tree polled at start", size)
	}
	before := map[string]float64{}
	for _, s := range series {
		before[s] = scrape(t, g, s)
	}
	c := newClient(t, g, viaIntercept, g.verifier, appMod)
	c.must(appDownload...)
	c = newClient(t, g, viaIntercept, g.verifier, appMod) // a second client hits the cache
	c.must(appDownload...)
	for _, s := range series {
		if after := scrape(t, g, s); after <= before[s] || after <= 0 {
			t.Errorf("%s did not move: %v -> %v", s, before[s], after)
		}
	}
	m := module.Version{Path: "example.com/lib", Version: "v1.0.0"} // not downloaded yet
	up.SetZipMismatch(m, true)
	fails := scrape(t, g, `modgate_verification_failures_total{kind="zip"}`)
	newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n").run("mod", "download", m.Path+"@"+m.Version)
	if after := scrape(t, g, `modgate_verification_failures_total{kind="zip"}`); after != max(fails, 0)+1 {
		t.Errorf("verification failures of kind zip: %v -> %v, want one more", fails, after)
	}
}

// TestCacheStats checks modgate cache stats against a running gate.
func TestCacheStats(t *testing.T) {
	_, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	c := newClient(t, g, viaIntercept, g.verifier, appMod)
	c.must(appDownload...)
	newClient(t, g, viaIntercept, g.verifier, appMod).must(appDownload...)
	out, code := adminCLI(t, g, "cache", "stats")
	if code != 0 {
		t.Fatalf("modgate cache stats: exit %d\n%s", code, out)
	}
	for _, want := range []string{"KIND", "zip ", "mod ", "sumdb ", "witness ", "total", "hit ratio since start: "} {
		if !strings.Contains(out, want) {
			t.Errorf("cache stats lacks %q:\n%s", want, out)
		}
	}
	out, code = adminCLI(t, g, "cache", "stats", "--json")
	var s struct {
		Kinds    map[string]struct{ Objects int64 }
		HitRatio float64 `json:"hit_ratio"`
		Requests int64
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || code != 0 {
		t.Fatalf("cache stats --json: exit %d, %v\n%s", code, err, out)
	}
	if s.Kinds["zip"].Objects != 4 || s.HitRatio <= 0.3 || s.HitRatio >= 1 || s.Requests == 0 {
		t.Errorf("cache stats: %+v, want 4 zips and a hit ratio between 0.3 and 1 after a cold and a warm client", s)
	}
}
