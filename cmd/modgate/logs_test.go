package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLogsAndMetricsForPeople runs the binary at --log-level info and
// checks: certmagic's routine lines stay out of the log, no field holds a
// pointer, every duration is in milliseconds, and
// modgate_policy_decisions_total counts requests, not the versions of a
// list.
func TestLogsAndMetricsForPeople(t *testing.T) {
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"), "--log-level", "info")
	up.Handle("/example.com/lib/@v/list", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "v1.0.0\nv1.1.0\nv1.2.0\n")
	})
	newClient(t, g, viaIntercept, g.verifier, appMod).must("mod", "download", "example.com/dep@v1.0.0") // issues leaf certificates
	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
		}
		return string(b)
	}
	decisions := func() string {
		var out []string
		for _, l := range strings.Split(get("http://"+g.admin+"/metrics"), "\n") {
			if strings.HasPrefix(l, "modgate_policy_decisions_total{") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	before := decisions()
	get("http://" + g.listen + "/example.com/lib/@v/list")
	if after := decisions(); after != before {
		t.Errorf("a list of 3 versions changed modgate_policy_decisions_total:\nbefore %s\nafter %s", before, after)
	}
	waitFor(t, g, `"logger":"access"`, `"path":"/example.com/lib/@v/list"`)

	log := g.Log()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"logger":"certs`) && !strings.Contains(line, `"level":"warn"`) && !strings.Contains(line, `"level":"error"`) {
			t.Errorf("a routine certificate line at info level: %s", line)
		}
	}
	if m := regexp.MustCompile(`":"0x[0-9a-f]{6,}"`).FindString(log); m != "" {
		t.Errorf("a log field holds a pointer (%s):\n%s", m, log)
	}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"path":"/example.com/lib/@v/list"`) {
			continue
		}
		var rec struct {
			UpstreamMS float64 `json:"upstream_ms"`
			Duration   float64 `json:"duration"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.UpstreamMS < 300 || rec.Duration < rec.UpstreamMS {
			t.Errorf("upstream_ms %v and duration %v: want both in milliseconds (the upstream took 300ms): %s", rec.UpstreamMS, rec.Duration, line)
		}
	}
}
