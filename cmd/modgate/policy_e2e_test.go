package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/policy"
)

// emptyMod is a main module with no requirements.
const emptyMod = "module example.com/app\n\ngo 1.21\n"

// policyCLI runs the real binary's policy subcommands against g.
func policyCLI(t *testing.T, g *gateProc, args ...string) (string, int) {
	t.Helper()
	return adminCLI(t, g, append([]string{"policy"}, args...)...)
}

// adminCLI runs a subcommand of the real binary that talks to g's admin API.
func adminCLI(t *testing.T, g *gateProc, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "MODGATE_ADMIN=http://"+g.admin, "MODGATE_DATA_DIR="+g.dataDir)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// mustPolicy runs a policy subcommand that must succeed.
func mustPolicy(t *testing.T, g *gateProc, args ...string) string {
	t.Helper()
	out, code := policyCLI(t, g, args...)
	if code != 0 {
		t.Fatalf("modgate policy %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// currentPolicy reads the policy in force through the CLI.
func currentPolicy(t *testing.T, g *gateProc) *policy.Policy {
	t.Helper()
	var p policy.Policy
	if err := json.Unmarshal([]byte(mustPolicy(t, g, "list", "--json")), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// editPolicy rewrites the policy file by hand and waits until the gate has
// read it (or, for an invalid file, until it has logged the refusal).
func editPolicy(t *testing.T, g *gateProc, text string, valid bool) {
	t.Helper()
	path := filepath.Join(g.dataDir, "policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := policyCLI(t, g, "export")
		if valid && strings.TrimSpace(out) != "" && samePolicy(t, out, text) {
			return
		}
		if !valid && strings.Contains(g.Log(), "refus") && strings.Contains(mustPolicy(t, g, "log"), "policy.invalid") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the gate did not pick up the hand edit (valid=%v):\n%s", valid, g.Log())
}

func samePolicy(t *testing.T, a, b string) bool {
	pa, err1 := policy.Parse([]byte(a))
	pb, err2 := policy.Parse([]byte(b))
	if err1 != nil || err2 != nil {
		return false
	}
	ja, _ := json.Marshal(pa)
	jb, _ := json.Marshal(pb)
	return bytes.Equal(ja, jb)
}

// goGet runs go get in a fresh client and returns its output and error.
func goGet(t *testing.T, g *gateProc, target string) (string, error) {
	t.Helper()
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	return c.run("get", target)
}

func TestPolicyEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	_, g := fakeGate(t, dataDir)

	// A deny rule added while the gate runs refuses v1.1.0 with its id and reason.
	mustPolicy(t, g, "deny", "example.com/bad@<v1.2.0", "--reason", "CVE-2099-0001")
	p := currentPolicy(t, g)
	if len(p.Rules) != 1 {
		t.Fatalf("rules after deny: %+v", p.Rules)
	}
	id := p.Rules[0].ID
	out, err := goGet(t, g, "example.com/bad@v1.1.0")
	if err == nil || !strings.Contains(out, "denied by policy rule "+id+": CVE-2099-0001") || !strings.Contains(out, "403") {
		t.Errorf("go get example.com/bad@v1.1.0: err=%v, want 403 naming rule %s and its reason:\n%s", err, id, out)
	}
	if out, err := goGet(t, g, "example.com/bad@v1.2.0"); err != nil {
		t.Errorf("go get example.com/bad@v1.2.0: %v\n%s", err, out)
	}

	// @latest resolves to the newest allowed version.
	mustPolicy(t, g, "deny", "example.com/lib@v1.2.0", "--reason", "broken release", "--id", "lib-120")
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("get", "example.com/lib@latest")
	if mod := string(c.file("app/go.mod")); !strings.Contains(mod, "example.com/lib v1.1.0") {
		t.Errorf("go get example.com/lib@latest with v1.2.0 denied chose:\n%s", mod)
	}

	// Retracted versions and fresh versions, by hand edit of the file.
	editPolicy(t, g, "mode: enforce\ndefault: allow\ndeny_retracted: true\ncooldown: 72h\nrules: []\n", true)
	if out, err := goGet(t, g, "example.com/retracted@v1.0.0"); err == nil || !strings.Contains(out, "retract") {
		t.Errorf("go get of a retracted version: err=%v, want a refusal naming the retraction:\n%s", err, out)
	}
	if out, err := goGet(t, g, "example.com/fresh@v1.0.0"); err == nil || !strings.Contains(out, "cooldown") {
		t.Errorf("go get of a version younger than the cooldown: err=%v, want a refusal:\n%s", err, out)
	}
	mustPolicy(t, g, "allow", "example.com/fresh", "--reason", "vetted by the security team", "--id", "fresh-ok")
	if out, err := goGet(t, g, "example.com/fresh@v1.0.0"); err != nil {
		t.Errorf("go get of a fresh version exempted by an allow rule: %v\n%s", err, out)
	}

	// An invalid hand edit keeps the policy in force.
	before := currentPolicy(t, g)
	editPolicy(t, g, "mode: enforce\nrules:\n  - id: x\n    action: maybe\n", false)
	if after := currentPolicy(t, g); len(after.Rules) != len(before.Rules) || after.Cooldown != before.Cooldown {
		t.Errorf("an invalid file replaced the policy: before %+v after %+v", before, after)
	}

	// Report mode lets everything through and audits would_deny.
	editPolicy(t, g, "mode: report\ndefault: allow\nrules:\n  - id: bad-cve\n    action: deny\n    module: example.com/bad\n    versions: <v1.2.0\n    reason: CVE-2099-0001\n", true)
	if out, err := goGet(t, g, "example.com/bad@v1.1.0"); err != nil {
		t.Errorf("report mode refused: %v\n%s", err, out)
	}
	logOut := mustPolicy(t, g, "log", "--json")
	if n := strings.Count(logOut, `"would_deny"`); n != 1 {
		t.Errorf("the audit log has %d would_deny entries for one go get, want 1 (repeats within a minute are folded)", n)
	}
	for _, want := range []string{"would_deny", "example.com/bad@v1.1.0", "bad-cve", "policy.add", "token:", "policy.reload", "policy.invalid"} {
		if !strings.Contains(logOut, want) {
			t.Errorf("policy log lacks %q:\n%s", want, logOut)
		}
	}
}

// TestPolicyAPIRefusesWithoutToken checks that an unauthenticated change
// gets 401 and leaves the policy file as it was.
func TestPolicyAPIRefusesWithoutToken(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	_, g := fakeGate(t, dataDir)
	path := filepath.Join(dataDir, "policy.yaml")
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rule := `{"rule":{"id":"x","action":"deny","module":"example.com/bad","reason":"r"}}`
	for name, auth := range map[string]string{"no token": "", "wrong token": "Bearer 0123456789abcdef", "basic auth": "Basic YWRtaW46YWRtaW4="} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+g.admin+"/api/v1/policy/rules", strings.NewReader(rule))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
	}
	cli := exec.Command(binary, "policy", "deny", "example.com/bad", "--reason", "r")
	cli.Env = append(os.Environ(), "MODGATE_ADMIN=http://"+g.admin, "MODGATE_ADMIN_TOKEN=wrong", "MODGATE_DATA_DIR="+t.TempDir())
	if out, err := cli.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("modgate policy deny with a wrong token: err=%v, want exit 1 naming 401:\n%s", err, out)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("the policy file changed after refused requests")
	}
}
