package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
)

// auditActions returns the actions of gate i's audit log, newest first.
func (c *testCluster) auditActions(i int) []string {
	c.t.Helper()
	code, b := c.api(i, http.MethodGet, "/api/v1/audit", nil)
	var page admin.AuditPage
	if err := json.Unmarshal(b, &page); code != http.StatusOK || err != nil {
		c.t.Fatalf("gate %d: GET /api/v1/audit: %d %v\n%s", i, code, err, b)
	}
	var out []string
	for _, e := range page.Entries {
		out = append(out, e.Action)
	}
	return out
}

// TestClusterPolicyChangeReachesEveryGate is case 3 of issue 12: a deny
// through gate 0's admin API is enforced by gate 2 within 1s and audited
// once; gate 2 exports it; an edit of gate 1's policy file is refused with
// a message that says what to do, and changes nothing in force.
func TestClusterPolicyChangeReachesEveryGate(t *testing.T) {
	c := startCluster(t, 3)
	const info = "/example.com/bad/@v/v1.2.0.info"
	if code, body, err := c.get(2, info); err != nil || code != http.StatusOK {
		t.Fatalf("gate 2 before the deny: %d %v %s", code, err, body)
	}
	mustPolicy(t, c.gate(0), "deny", "example.com/bad@v1.2.0", "--reason", "case 3", "--id", "case3")
	d := eventually(t, 3*time.Second, "gate 2 enforces the deny", func() bool {
		code, _, err := c.get(2, info)
		return err == nil && code == http.StatusForbidden
	})
	t.Logf("gate 2 enforced the deny %s after gate 0 stored it", d)
	if d > time.Second {
		t.Errorf("gate 2 enforced the deny after %s, want within 1s", d)
	}
	_, body, _ := c.get(2, info)
	if !strings.Contains(string(body), "case 3") {
		t.Errorf("gate 2's denial does not give the reason: %s", body)
	}
	if out := mustPolicy(t, c.gate(2), "export"); !strings.Contains(out, "case3") {
		t.Errorf("gate 2 exports no rule case3:\n%s", out)
	}
	var adds int // the audit log is one table, queryable with SQL
	if err := c.db().QueryRow(t.Context(),
		"SELECT count(*) FROM modgate_audit WHERE action = $1 AND subject = 'case3'", audit.PolicyAdd).
		Scan(&adds); err != nil {
		t.Fatal(err)
	}
	if adds != 1 {
		t.Errorf("the change is audited %d times, want once", adds)
	}
	for i := range 3 {
		if got := c.auditActions(i); !slices.Contains(got, audit.PolicyAdd) {
			t.Errorf("gate %d's audit log does not show the change: %q", i, got)
		}
	}
	path := filepath.Join(c.dirs[1], "policy.yaml")
	mirror, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(mirror), "case3") {
		t.Fatalf("gate 1's policy file does not mirror the shared policy (%v):\n%s", err, mirror)
	}
	if err := os.WriteFile(path, []byte("rules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c.gate(1), "the policy file was edited", "modgate policy")
	if code, _, _ := c.get(1, info); code != http.StatusForbidden {
		t.Errorf("gate 1 after an edit of its policy file: %d, want the shared deny (403)", code)
	}
}
