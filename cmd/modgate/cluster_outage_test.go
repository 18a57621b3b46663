package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// sample is one request of the outage test's traffic.
type sample struct {
	at     time.Time
	gate   int
	path   string
	status int
	body   string
}

// committed is what the cluster database holds that must survive a crash.
type committed struct {
	identity, witness string
	policyVersion     int64
	audit             int
}

func (c *testCluster) committed() committed {
	c.t.Helper()
	var s committed
	ctx := context.Background()
	err := c.db().QueryRow(ctx, `SELECT (SELECT verifier FROM modgate_identity),
		(SELECT encode(value, 'escape') FROM modgate_witness WHERE key = 'witness/sum.golang.org/latest'),
		(SELECT version FROM modgate_policy), (SELECT count(*) FROM modgate_audit)`).
		Scan(&s.identity, &s.witness, &s.policyVersion, &s.audit)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// TestClusterDatabaseRestartDuringTraffic is case 5 of issue 12: the
// database crashes (immediate stop) and restarts while three gates serve.
// Module files from the first level never fail; checksum-database
// lookups fail only with 503, only while the database is unreachable and
// up to 3s after it is back (the documented degraded window), saying why;
// /readyz says degraded and the metric counts the outage; a new
// verification during the outage stores nothing and succeeds afterwards;
// nothing committed is lost; no gate is restarted.
func TestClusterDatabaseRestartDuringTraffic(t *testing.T) {
	c := startCluster(t, 3)
	for i := range 3 {
		c.client(i, viaIntercept, appMod).must(appDownload...)
	}
	mustPolicy(t, c.gate(0), "deny", "example.com/bad@v1.0.0", "--reason", "before the crash", "--id", "pre")
	before := c.committed()
	paths := []string{"/example.com/lib/@v/v1.2.0.info", "/example.com/lib/@v/v1.2.0.mod",
		"/example.com/lib/@v/v1.2.0.zip", "/example.com/dep/@v/v1.0.0.zip",
		"/sumdb/sum.golang.org/lookup/example.com/lib@v1.2.0"}
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	ctx, stop := context.WithCancel(context.Background())
	for i := range 3 {
		wg.Go(func() {
			for k := 0; ctx.Err() == nil; k++ {
				p := paths[k%len(paths)]
				code, body, err := c.get(i, p)
				if err != nil {
					t.Errorf("gate %d %s: %v", i, p, err)
					return
				}
				mu.Lock()
				samples = append(samples, sample{time.Now(), i, p, code, string(body)})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	fresh, err := c.up.AddFillers(1)
	if err != nil {
		t.Fatal(err)
	}
	freshLookup := "/sumdb/sum.golang.org/lookup/" + fresh[0].Path + "@" + fresh[0].Version
	down := time.Now()
	c.pg.Stop(t)
	for i := range 3 {
		eventually(t, 5*time.Second, fmt.Sprintf("gate %d says degraded", i), func() bool {
			return strings.HasPrefix(adminGet(t, c.gate(i), "/readyz"), "degraded: cluster database unreachable")
		})
		if m := adminGet(t, c.gate(i), "/metrics"); !strings.Contains(m, "modgate_cluster_db_up 0") ||
			!strings.Contains(m, "modgate_cluster_db_outages_total 1") {
			t.Errorf("gate %d's metrics during the outage:\n%s", i, grepLines(m, "modgate_cluster"))
		}
	}
	code, body, _ := c.get(1, freshLookup)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "cluster database") {
		t.Errorf("a new verification during the outage: %d %s, want 503 with the reason", code, body)
	}
	time.Sleep(time.Second)
	c.pg.Restart(t)
	restarted := time.Now()
	for i := range 3 {
		eventually(t, 10*time.Second, fmt.Sprintf("gate %d ready again", i), func() bool {
			return adminGet(t, c.gate(i), "/readyz") == "ready\n"
		})
	}
	t.Logf("database down %s; gates ready %s after its restart", restarted.Sub(down), time.Since(restarted))
	time.Sleep(3 * time.Second)
	stop()
	wg.Wait()
	window := restarted.Add(3 * time.Second)
	var failed, served int
	for _, s := range samples {
		if s.status == http.StatusOK {
			served++
			continue
		}
		failed++
		lookup := strings.HasPrefix(s.path, "/sumdb/")
		if !lookup || s.status != http.StatusServiceUnavailable || s.at.Before(down) || s.at.After(window) {
			t.Errorf("gate %d %s at %s (down at %s, back at %s): %d %s", s.gate, s.path,
				s.at.Format("15:04:05.000"), down.Format("15:04:05.000"), restarted.Format("15:04:05.000"),
				s.status, s.body)
		}
	}
	t.Logf("%d requests served, %d refused with 503 in the window", served, failed)
	if code, body, _ := c.get(2, freshLookup); code != http.StatusOK {
		t.Errorf("the new verification after the outage: %d %s", code, body)
	}
	after := c.committed()
	if after.identity != before.identity || after.policyVersion != before.policyVersion ||
		after.audit < before.audit || treeSize(after.witness) < treeSize(before.witness) || treeSize(before.witness) == 0 {
		t.Errorf("committed data changed across the crash:\nbefore %+v\nafter  %+v", before, after)
	}
	if code, _, _ := c.get(2, "/example.com/bad/@v/v1.0.0.info"); code != http.StatusForbidden {
		t.Errorf("the policy from before the crash: %d, want 403", code)
	}
}

// treeSize returns the size of the tree of a signed tree note, 0 if none.
func treeSize(note string) int64 {
	var n int64
	if lines := strings.Split(note, "\n"); len(lines) > 1 {
		fmt.Sscan(lines[1], &n)
	}
	return n
}
