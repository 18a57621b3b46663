package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
)

// TestCacheMaxSize runs the gate with a cache far smaller than what the
// go command downloads: the gate evicts module files in the background,
// keeps the witness state, and serves the same build again afterwards.
func TestCacheMaxSize(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir, "--cache-max-size", "1KiB")
	newClient(t, g, viaGOPROXY, g.verifier, appMod).must(appDownload...)
	g.stop()
	// Passes run at least 5 s apart, so the last writes may not have been
	// evicted yet; a gate starting over a cache above its size evicts at
	// once.
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--cache-max-size", "1KiB")
	deadline := time.Now().Add(10 * time.Second)
	for !evictedBelow(g.Log(), 1024) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	g.stop()

	ctx := context.Background()
	st, err := cache.Open(ctx, cache.Config{Dir: filepath.Join(dataDir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "witness/"+up.Name()+"/latest"); err != nil {
		t.Errorf("witness state after eviction: %v", err)
	}
	stats, err := st.Stats(ctx)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if z := stats.Kinds["zip"].Objects; z >= int64(len(appDownload)-2) {
		t.Errorf("all %d zips still cached after eviction to 1 KiB", z)
	}

	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--cache-max-size", "1KiB")
	newClient(t, g, viaIntercept, g.verifier, appMod).must(appDownload...)
}

// evictedBelow reports whether the gate's log has an eviction pass that
// left at most limit bytes.
func evictedBelow(log string, limit int64) bool {
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Msg   string
			After int64
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "evicted least recently used objects" && rec.After <= limit {
			return true
		}
	}
	return false
}
