package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/admin"
)

// adminPost sends an authenticated JSON POST to g's admin API.
func adminPost(t *testing.T, g *gateProc, path string, body []byte) (int, admin.APIError) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(g.dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+g.admin+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e admin.APIError
	data, _ := io.ReadAll(resp.Body)
	json.Unmarshal(data, &e)
	return resp.StatusCode, e
}

// TestPolicyWritesKeepTheGateStartable runs the real binary and checks
// that no admin API or CLI write can leave a policy file the gate refuses:
// a 900,000-emoji pattern is refused when the rule is added, a whole
// policy whose file would be over the size limit is refused before it is
// written, later writes still work, and the gate starts again.
func TestPolicyWritesKeepTheGateStartable(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)
	path := filepath.Join(dataDir, "policy.yaml")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	body, _ := json.Marshal(admin.AddRuleRequest{Rule: policy.Rule{Action: policy.Deny,
		Module: strings.Repeat("\U0001F600", 900000), Reason: "r"}})
	if status, e := adminPost(t, g, "/api/v1/policy/rules", body); status != http.StatusBadRequest || e.Field != "rule.module" {
		t.Errorf("POST a rule with a 900,000-emoji pattern: %d %+v, want 400 about rule.module", status, e)
	}
	if out, code := policyCLI(t, g, "deny", strings.Repeat("a", policy.MaxPatternLen+1), "--reason", "r"); code != 1 || !strings.Contains(out, "at most") {
		t.Errorf("policy deny with an overlong pattern: exit %d, want 1 naming the limit:\n%s", code, out)
	}

	// Every rule valid, but the file would be over the limit.
	reason := strings.Repeat("\U0001F600", policy.MaxReasonLen/4)
	var big policy.Policy
	for i := range 6000 {
		big.Rules = append(big.Rules, policy.Rule{ID: fmt.Sprintf("r%d", i), Action: policy.Deny, Module: fmt.Sprintf("example.com/m%d", i), Reason: reason})
	}
	data, _ := json.Marshal(&big)
	if len(data) > policy.MaxFileSize {
		t.Fatalf("the test policy is %d bytes of JSON; it must fit the API's limit", len(data))
	}
	file := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(file, data, 0o644)
	if out, code := policyCLI(t, g, "import", file); code != 1 || !strings.Contains(out, "policy file would be") {
		t.Errorf("policy import of a policy whose file would be too large: exit %d, want 1 naming the size:\n%s", code, out)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Fatalf("a refused write changed policy.yaml (%d bytes)", len(after))
	}

	// Later writes still work, and the gate starts again with the file.
	mustPolicy(t, g, "deny", "example.com/bad@<v1.2.0", "--reason", "CVE-2099-0001", "--id", "cve")
	g.stop()
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	if p := currentPolicy(t, g); len(p.Rules) != 1 || p.Rules[0].ID != "cve" {
		t.Errorf("after a restart the policy has rules %+v, want the one rule cve", p.Rules)
	}
}
