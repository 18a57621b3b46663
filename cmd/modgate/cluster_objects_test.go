package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// moduleFile reports whether an upstream request path is a module file
// that the cluster shares (.info, .mod, .zip), not a list or sumdb read.
func moduleFile(p string) bool {
	return !strings.HasPrefix(p, "/sumdb/") &&
		(strings.HasSuffix(p, ".info") || strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".zip"))
}

// TestClusterOneFetchPerObject is case 1 of issue 12: three go clients,
// each through another gate of one cluster, download the same modules at
// the same time. The upstream sees one request per module file, and every
// client gets the same bytes, which are the upstream's.
func TestClusterOneFetchPerObject(t *testing.T) {
	c := startCluster(t, 3)
	clients := make([]*goClient, 3)
	outs := make([]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = c.client(i, viaIntercept, appMod)
		wg.Go(func() { outs[i], errs[i] = clients[i].run(appDownload...) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("go mod download through gate %d: %v\n%s\ngate log:\n%s", i, err, outs[i], c.gate(i).Log())
		}
	}
	counts := map[string]int{}
	for _, p := range c.up.RequestLog() {
		if moduleFile(p) {
			counts[p]++
		}
	}
	zips := 0
	for p, n := range counts {
		if n != 1 {
			t.Errorf("upstream %s: %d requests from three gates, want 1", p, n)
		}
		if strings.HasSuffix(p, ".zip") {
			zips++
		}
	}
	if zips < 4 {
		t.Fatalf("the upstream served %d zips, want at least the 4 of the build list: %v", zips, counts)
	}
	for _, cl := range clients {
		checkGoSum(t, c.up, cl)
	}
	for p := range counts {
		// The go command writes .info files its own way: compare those
		// between the clients, the others with the upstream's bytes too.
		want := clients[0].file(filepath.Join("modcache", "cache", "download", filepath.FromSlash(p)))
		if !strings.HasSuffix(p, ".info") && !bytes.Equal(want, upstreamFile(t, c.up, p)) {
			t.Errorf("client of gate 0 has %s that differs from the upstream's", p)
		}
		for i, cl := range clients[1:] {
			if got := cl.file(filepath.Join("modcache", "cache", "download", filepath.FromSlash(p))); !bytes.Equal(got,
				want) {
				t.Errorf("client of gate %d has %s that differs from gate 0's", i+1, p)
			}
		}
	}
	var objects int
	if err := c.db().QueryRow(t.Context(), "SELECT count(*) FROM modgate_objects").Scan(&objects); err != nil {
		t.Fatal(err)
	}
	if objects != len(counts) {
		t.Errorf("the second level holds %d objects, want the %d module files", objects, len(counts))
	}
}

// upstreamFile fetches path from the fake upstream directly.
func upstreamFile(t *testing.T, up *fakeupstream.Server, path string) []byte {
	t.Helper()
	resp, err := http.Get(up.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("upstream %s: %d %v", path, resp.StatusCode, err)
	}
	return b
}

// zipSum fetches url and returns the status and the SHA-256 of the body,
// or an error if the body could not be read whole.
func zipSum(ctx context.Context, url string) (int, [sha256.Size]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, [sha256.Size]byte{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, [sha256.Size]byte{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return resp.StatusCode, [sha256.Size]byte{}, err
	}
	return resp.StatusCode, [sha256.Size]byte(h.Sum(nil)), nil
}

// TestClusterGateKilledWhileStoringAZip is case 4 of issue 12: a gate is
// killed with SIGKILL while it writes a large verified zip into the
// cluster's second level. No other gate ever sees part of it; once the
// dead gate's lease expires, one of the others fetches the zip again,
// and both serve it whole.
func TestClusterGateKilledWhileStoringAZip(t *testing.T) {
	const lease = 2 * time.Second
	c := startCluster(t, 3, "--cluster-fetch-lease", lease.String())
	m := module.Version{Path: "example.com/large", Version: "v1.0.0"}
	file, err := c.up.AddLargeModule(m, 64<<20, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	path := fakeupstream.ZipPath(m)
	key := "zip" + strings.TrimSuffix(path, ".zip")

	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	go zipSum(ctx, "http://"+c.gate(0).listen+path) // cut short by the kill
	// Kill gate 0 while its COPY of the zip's chunks runs.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		var n int
		err := c.db().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query ILIKE 'copy%modgate_object_chunks%'`).Scan(&n)
		if err == nil && n > 0 {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("gate 0 did not store the zip in the second level within 2m (%v); its log:\n%s", err,
				c.gate(0).Log())
		}
	}
	c.kill(0)
	killed := time.Now()
	var visible int
	if err := c.db().QueryRow(ctx, "SELECT count(*) FROM modgate_objects WHERE key = $1", key).Scan(&visible); err != nil {
		t.Fatal(err)
	}
	if visible != 0 {
		t.Fatal("the zip the killed gate was storing is visible in the second level")
	}

	type result struct {
		status int
		sum    [sha256.Size]byte
		err    error
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	for i := 1; i < 3; i++ {
		wg.Go(func() {
			var r result
			r.status, r.sum, r.err = zipSum(ctx, "http://"+c.gate(i).listen+path)
			results[i] = r
		})
	}
	wg.Wait()
	for i := 1; i < 3; i++ {
		if r := results[i]; r.err != nil || r.status != http.StatusOK || r.sum != want {
			t.Errorf("gate %d after the kill: status %d, whole %v, err %v", i, r.status, r.sum == want, r.err)
		}
	}
	if took := time.Since(killed); took > lease+30*time.Second {
		t.Errorf("the others served the zip %v after the kill (lease %v)", took, lease)
	}
	if n := c.up.Requests(path); n != 2 {
		t.Errorf("%d upstream requests for the zip, want 2: the killed gate's and one more", n)
	}
	var size int64
	var sum []byte
	if err := c.db().QueryRow(ctx, "SELECT size, sha256 FROM modgate_objects WHERE key = $1", key).Scan(&size,
		&sum); err != nil {
		t.Fatalf("the zip is not in the second level after the others fetched it: %v", err)
	}
	if size != int64(len(data)) || !bytes.Equal(sum, want[:]) {
		t.Errorf("the second level holds %d bytes hashing to %x, want %d, %x", size, sum, len(data), want)
	}
	// The killed gate, started again, serves it whole too.
	c.start(0)
	if status, got, err := zipSum(ctx, "http://"+c.gate(0).listen+path); err != nil || status != http.StatusOK ||
		got != want {
		t.Errorf("gate 0 restarted: status %d, whole %v, err %v", status, got == want, err)
	}
	if n := c.up.Requests(path); n != 2 {
		t.Errorf("%d upstream requests for the zip after the restart, want still 2", n)
	}
}
