package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// liveVulnDB is a real version of the vulnerability database module.
const liveVulnDB = "v0.0.0-20261105234957-e22db6528018"

// TestLiveVulnDB builds the database from the real golang.org/x/vulndb,
// fetched and verified through a gate in front of proxy.golang.org and the
// real checksum database. It skips only when that version cannot be
// reached (a transport error, or a refusal by a filtering intermediary);
// a verification or build error fails.
func TestLiveVulnDB(t *testing.T) {
	probe := "https://proxy.golang.org/golang.org/x/vulndb/@v/" + liveVulnDB + ".info"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Skipf("the real upstream cannot be reached (%v); skipping the live test", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Skipf("%s answered %s (refused on the way); skipping the live test", probe, resp.Status)
	}

	dataDir := filepath.Join(t.TempDir(), "data")
	g := startGate(t, dataDir, "--vuln-module-version", liveVulnDB)
	deadline := time.Now().Add(4 * time.Minute)
	for !strings.Contains(g.Log(), "vulnerability database in force") && time.Now().Before(deadline) {
		if strings.Contains(g.Log(), "vulnerability database refresh failed") {
			t.Fatalf("building the real database failed:\n%s", g.Log())
		}
		time.Sleep(time.Second)
	}
	st := waitVulnVersion(t, g, liveVulnDB)
	if st.DB.Entries < 4000 || st.DB.Skipped > st.DB.Entries/100 {
		t.Errorf("the real database: %d entries, %d skipped; want over 4000 and few skipped (%+v)",
			st.DB.Entries, st.DB.Skipped, st.DB.Skips)
	}
	if want := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC); !st.DB.Source.Time.Equal(want) {
		t.Errorf("source time %v, want the commit time %v", st.DB.Source.Time, want)
	}
	sum := filepath.Join(t.TempDir(), "go.sum")
	os.WriteFile(sum, []byte("golang.org/x/text v0.3.5 h1:x\ngolang.org/x/text v0.3.8 h1:x\n"), 0o644)
	out, code := adminCLI(t, g, "vuln", "check", sum)
	if code != 1 || !strings.Contains(out, "golang.org/x/text@v0.3.5: GO-2021-0113 (fixed in v0.3.7)") ||
		strings.Contains(out, "v0.3.8: GO-2021-0113") {
		t.Errorf("vuln check of golang.org/x/text v0.3.5 and v0.3.8 (exit %d):\n%s", code, out)
	}
	resp, err = http.Get(fmt.Sprintf("http://%s/vuln/ID/GO-2021-0113.json", g.listen))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /vuln/ID/GO-2021-0113.json: %v %v", err, resp)
	}
	resp.Body.Close()
}
