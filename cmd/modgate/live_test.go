package main

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// liveMod requires a few small real modules.
const liveMod = `module example.com/live

go 1.21

require (
	golang.org/x/mod v0.20.0
	github.com/google/uuid v1.6.0
)
`

// TestLiveUpstream runs the go command through a gate in front of the real
// proxy.golang.org, with the real sum.golang.org key verified by the gate
// and GOSUMDB pinned to the enterprise key. It fails on any verification
// error and skips only when the upstream cannot be reached at all.
func TestLiveUpstream(t *testing.T) {
	probe := "https://proxy.golang.org/sumdb/sum.golang.org/supported"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Skipf("the real upstream cannot be reached (%v); skipping the live test", err)
	}
	resp.Body.Close()

	dataDir := filepath.Join(t.TempDir(), "data")
	g := startGate(t, dataDir) // the defaults: proxy.golang.org and the real sum.golang.org key
	for _, mode := range []clientMode{viaIntercept, viaGOPROXY} {
		c := newClient(t, g, mode, g.verifier, liveMod)
		c.must("mod", "download", "golang.org/x/mod@v0.20.0", "github.com/google/uuid@v1.6.0")
		c.must("mod", "verify")
		if mode == viaIntercept {
			checkCoSigned(t, c, g.verifier, defaultUpstreamSumDB)
		}
	}

	g.stop()
	g = startGate(t, dataDir, "--offline")
	c := newClient(t, g, viaIntercept, g.verifier, liveMod)
	c.must("mod", "download", "golang.org/x/mod@v0.20.0", "github.com/google/uuid@v1.6.0")
	c.must("mod", "verify")
}
