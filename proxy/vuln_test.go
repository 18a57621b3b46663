package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/policy"
)

// newVulnGate is a gate over a fake upstream that publishes the fake
// vulnerability database committed at t.
func newVulnGate(t *testing.T, p *policy.Policy, at time.Time) (*testGate, string) {
	t.Helper()
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	v, err := fake.AddVulnDB(at, fakeupstream.VulnDBEntries())
	if err != nil {
		t.Fatal(err)
	}
	return newTestGate(t, fake, gateOptions{Policy: p, ListTTL: time.Nanosecond}), v.Version
}

func TestVulnRefreshAndServe(t *testing.T) {
	at := time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
	tg, v1 := newVulnGate(t, nil, at)
	tg.gate.cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	checkErrorBody(t, "before the first build", get(t, tg.url, "/vuln/index/db.json.gz"),
		http.StatusServiceUnavailable, "no vulnerability database built yet")
	if err := tg.gate.RefreshVuln(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := tg.gate.cfg.Metrics.Summary().Requests; n != 1 {
		t.Errorf("%d requests counted, want 1: the gate's own fetches are not client traffic", n)
	}
	st := tg.gate.VulnStatus()
	if st.DB == nil || st.DB.Source.Version != v1 || st.LastOutcome != "built" || st.DB.Entries != 4 || st.DB.Skipped != 1 {
		t.Fatalf("status after a build: %+v", st)
	}
	r := get(t, tg.url, "/vuln/ID/"+fakeupstream.VulnLib+".json")
	if r.status != 200 || r.header.Get("Last-Modified") != at.Format(http.TimeFormat) ||
		!strings.Contains(string(r.body), `"modified":"2026-11-05T12:00:00Z"`) {
		t.Errorf("GET /vuln/ID/%s.json: %d %v\n%s", fakeupstream.VulnLib, r.status, r.header, r.body)
	}
	r = get(t, tg.url, "/vuln/index/modules.json.gz", "If-Modified-Since: "+at.Format(http.TimeFormat))
	if r.status != http.StatusNotModified {
		t.Errorf("conditional GET: %d, want 304", r.status)
	}
	if err := tg.gate.RefreshVuln(t.Context()); err != nil || tg.gate.VulnStatus().LastOutcome != "unchanged" {
		t.Errorf("a second refresh: %v, %+v", err, tg.gate.VulnStatus())
	}

	// Policy applies to the database module: a denied newer version is left
	// out of its list, and the one in force stays.
	v2, err := tg.fake.AddVulnDB(at.Add(time.Hour), fakeupstream.VulnDBEntries())
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse([]byte("rules:\n  - {id: no-new-vulndb, action: deny, module: golang.org/x/vulndb, versions: \"" +
		v2.Version + "\", reason: not yet}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg.gate.cfg.Policy = func() *policy.Policy { return p }
	tg.clock.Advance(time.Second)
	if err := tg.gate.RefreshVuln(t.Context()); err != nil || tg.gate.VulnDB().Source.Version != v1 {
		t.Errorf("a refresh with the newer version denied: %v, in force %s; want %s", err,
			tg.gate.VulnDB().Source.Version, v1)
	}
	// A newer version that fails verification keeps the one in force.
	tg.gate.cfg.Policy = nil
	tg.fake.SetZipMismatch(v2, true)
	tg.clock.Advance(time.Second)
	if err := tg.gate.RefreshVuln(t.Context()); err == nil || !strings.Contains(err.Error(), "checksum database") ||
		tg.gate.VulnDB().Source.Version != v1 {
		t.Errorf("a refresh to a zip that fails verification: %v, in force %s; want an error and %s", err,
			tg.gate.VulnDB().Source.Version, v1)
	}
	if st := tg.gate.VulnStatus(); st.LastOutcome != "failed" || st.Refreshes["failed"] != 1 || st.Refreshes["built"] != 1 {
		t.Errorf("status after a failed refresh: %+v", st)
	}
	tg.fake.SetZipMismatch(v2, false)
	if err := tg.gate.RefreshVuln(t.Context()); err != nil || tg.gate.VulnDB().Source.Version != v2.Version {
		t.Errorf("a refresh to the good zip: %v", err)
	}
}

func TestVulnPolicyDeny(t *testing.T) {
	p, err := policy.Parse([]byte("vulnerable:\n  action: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := newVulnGate(t, p, time.Now())
	// Without a database, nothing is known and nothing denied.
	if r := get(t, tg.url, modPath(t, libV100, ".info")); r.status != 200 {
		t.Fatalf("before the database: %d %s", r.status, r.body)
	}
	if err := tg.gate.RefreshVuln(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := "modgate: example.com/lib@v1.0.0 denied: affected by " + fakeupstream.VulnLib + "; fixed in v1.1.0"
	for _, path := range []string{modPath(t, libV100, ".info"), modPath(t, libV100, ".mod"), modPath(t, libV100, ".zip"),
		"/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"} {
		checkErrorBody(t, path, get(t, tg.url, path), http.StatusForbidden, want)
	}
	if r := get(t, tg.url, modPath(t, libV110, ".mod")); r.status != 200 {
		t.Errorf("the fixed version: %d %s", r.status, r.body)
	}
	if r := get(t, tg.url, "/example.com/lib/@v/list"); r.status != 200 || strings.Contains(string(r.body), "v1.0.0") ||
		!strings.Contains(string(r.body), "v1.1.0") {
		t.Errorf("list: %d %q, want v1.0.0 left out", r.status, r.body)
	}
	// The policy test's facts carry the entries.
	f, _ := tg.gate.Facts(t.Context(), "example.com/lib", "v1.0.0")
	if !f.VulnsKnown || len(f.Vulns) != 2 {
		t.Errorf("Facts: %+v, want the two entries (one withdrawn)", f)
	}
}

func TestServeVulnIntercepted(t *testing.T) {
	tg, _ := newVulnGate(t, nil, time.Now())
	if err := tg.gate.RefreshVuln(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, path string
		status     int
	}{
		{"vuln.go.dev", "/index/db.json.gz", 200},
		{"vuln.go.dev:443", "/ID/" + fakeupstream.VulnLib + ".json", 200},
		{"vuln.go.dev", "/ID/GO-2099-9999.json", 404},
		{"vuln.go.dev", "/vuln/index/db.json", 404},
	} {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+tt.host+tt.path, nil)
			req = req.WithContext(context.WithValue(req.Context(), interceptedKey{}, true))
			w := httptest.NewRecorder()
			tg.gate.ServeHTTP(w, req)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
		})
	}
}

// TestVulnOfflineNewestHeld: an offline gate builds the newest version
// whose zip it holds, as after a bundle import that brings no version list.
func TestVulnOfflineNewestHeld(t *testing.T) {
	at := time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	var held []string
	for i := range 3 {
		v, err := fake.AddVulnDB(at.Add(time.Duration(i)*time.Hour), fakeupstream.VulnDBEntries())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, v.Version)
	}
	dir := t.TempDir()
	online := newTestGate(t, fake, gateOptions{Dir: dir})
	for _, v := range held[:2] { // the newest is published but not held
		for _, ext := range []string{".info", ".zip"} {
			if r := get(t, online.url, "/golang.org/x/vulndb/@v/"+v+ext); r.status != 200 {
				t.Fatalf("%s%s: %d %s", v, ext, r.status, r.body)
			}
		}
	}
	online.close(t)
	offline := newTestGate(t, fake, gateOptions{Dir: dir, Offline: true, Key: online.key})
	if err := offline.gate.RefreshVuln(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := offline.gate.VulnDB().Source.Version; got != held[1] {
		t.Errorf("offline gate built %s, want the newest held %s", got, held[1])
	}
	empty := newTestGate(t, fake, gateOptions{Offline: true})
	if err := empty.gate.RefreshVuln(t.Context()); err == nil || empty.gate.VulnDB() != nil {
		t.Errorf("an offline gate holding nothing: %v", err)
	}
}
