package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
)

const policyTestToken = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// policyGate is the admin side of a gate: the policy API behind
// RequireAdmin over a policy file in a data directory.
type policyGate struct {
	dataDir, policyPath string
	file                *policy.File
	handler             http.Handler
	url                 string
}

func newPolicyGate(t *testing.T, withToken bool) *policyGate {
	t.Helper()
	ctx := context.Background()
	g := &policyGate{dataDir: t.TempDir()}
	g.policyPath = filepath.Join(g.dataDir, policyFile)
	if _, err := ensurePolicyFile(g.policyPath, policy.DefaultFile()); err != nil {
		t.Fatal(err)
	}
	if withToken {
		if err := os.WriteFile(filepath.Join(g.dataDir, adminTokenFile), []byte(policyTestToken+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if g.file, err = policy.OpenFile(ctx, g.policyPath, nil); err != nil {
		t.Fatal(err)
	}
	store, err := cache.Open(ctx, cache.Config{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	api := admin.NewPolicyAPI(admin.PolicyAPIConfig{File: g.file, Audit: audit.New(store)})
	mux := http.NewServeMux()
	api.Register(mux)
	g.handler = admin.RequireAuth(filepath.Join(g.dataDir, adminTokenFile), nil, mux)
	srv := httptest.NewServer(g.handler)
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// cli runs "modgate policy <args>" against the gate with its data directory.
func (g *policyGate) cli(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	all := append([]string{"policy"}, args...)
	if len(args) > 0 && args[0] != "check" {
		all = append(all, "--admin", g.url, "--data-dir", g.dataDir)
	}
	return runCmd(t, env, all...)
}

func TestPolicyCLI(t *testing.T) {
	g := newPolicyGate(t, true)
	steps := []struct {
		args    []string
		code    int
		stdout  []string
		stderr  []string
		noMatch string
	}{
		{[]string{"list"}, exitOK, []string{"mode: enforce  default: allow", "no rules"}, nil, ""},
		{
			[]string{"deny", "example.com/bad@<v1.2.0", "--reason", "CVE-2099-0001"},
			exitOK,
			[]string{"added rule deny-1 at position 0: deny example.com/bad <v1.2.0  (CVE-2099-0001)"},
			nil,
			"",
		},
		{
			[]string{"allow", "corp.example.com/*", "--id", "corp", "--position", "0"},
			exitOK,
			[]string{"added rule corp at position 0"},
			nil,
			"",
		},
		{[]string{"deny", "example.com/lib@>=v1.0.0 <v1.5.0", "--reason", "TICKET-1"}, exitOK, []string{"deny-2"}, nil, ""},
		{
			[]string{"list"},
			exitOK,
			[]string{
				"ID      ACTION  MODULE",
				"corp    allow   corp.example.com/*  -",
				"deny-1  deny    example.com/bad     <v1.2.0",
			},
			nil,
			"",
		},
		{
			[]string{"test", "example.com/bad@v1.1.0"},
			exitFail,
			[]string{"example.com/bad@v1.1.0:  denied", "rule:", "deny-1", "CVE-2099-0001"},
			[]string{"denied by rule deny-1"},
			"",
		},
		{[]string{"test", "example.com/bad@v1.2.0"}, exitOK, []string{"allowed", "default"}, nil, ""},
		{[]string{"test", "example.com/lib@v1.4.9-0.20240101000000-abcdefabcdef"}, exitFail, []string{"deny-2"}, nil, ""},
		{[]string{"rm", "deny-1"}, exitOK, []string{"removed rule deny-1: deny example.com/bad <v1.2.0"}, nil, ""},
		{[]string{"rm", "deny-1"}, exitFail, nil, []string{"404", "no rule with id"}, ""},
		{[]string{"test", "example.com/bad@v1.1.0"}, exitOK, []string{"allowed"}, nil, ""},
		{[]string{"export"}, exitOK, []string{"# modgate policy.", "id: corp", "id: deny-2"}, nil, "deny-1"},
		{
			[]string{"log"},
			exitOK,
			[]string{"TIME", "WHO", "policy.add", "policy.remove", tokenHash(policyTestToken)},
			nil,
			"",
		},
	}
	for _, s := range steps {
		code, stdout, stderr := g.cli(t, nil, s.args...)
		if code != s.code {
			t.Fatalf("policy %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", s.args, code, s.code, stdout, stderr)
		}
		for _, want := range s.stdout {
			if !strings.Contains(stdout, want) {
				t.Errorf("policy %q: stdout lacks %q:\n%s", s.args, want, stdout)
			}
		}
		for _, want := range s.stderr {
			if !strings.Contains(stderr, want) {
				t.Errorf("policy %q: stderr lacks %q:\n%s", s.args, want, stderr)
			}
		}
		if s.noMatch != "" && strings.Contains(stdout, s.noMatch) {
			t.Errorf("policy %q: stdout has %q:\n%s", s.args, s.noMatch, stdout)
		}
	}
	if ids := ruleList(g.file.Current()); ids != "deny-2,corp" { // a deny goes first by default
		t.Errorf("rules in force: %s", ids)
	}
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "token:" + hex.EncodeToString(sum[:4])
}

func ruleList(p *policy.Policy) string {
	var ids []string
	for _, r := range p.Rules {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

func TestPolicyCLIJSON(t *testing.T) {
	g := newPolicyGate(t, true)
	var added admin.AddRuleResponse
	cliJSON(t, g, &added, "deny", "example.com/bad@v1.0.0, v1.1.0", "--reason", "bad", "--id", "two")
	if added.Rule.ID != "two" || added.Rule.Versions != "v1.0.0, v1.1.0" {
		t.Errorf("deny --json: %+v", added)
	}
	var p policy.Policy
	cliJSON(t, g, &p, "list")
	if len(p.Rules) != 1 || p.Mode != policy.Enforce {
		t.Errorf("list --json: %+v", p)
	}
	var test admin.TestResponse
	code, stdout, _ := g.cli(t, nil, "test", "example.com/bad@v1.1.0", "--json")
	if err := json.Unmarshal([]byte(stdout), &test); err != nil || code != exitFail || test.Decision.Allowed ||
		test.Decision.Rule != "two" {
		t.Errorf("test --json: exit %d, %+v, %v", code, test, err)
	}
	var log admin.AuditPage
	cliJSON(t, g, &log, "log")
	if e := log.Entries; len(e) != 1 || e[0].Action != audit.PolicyAdd || e[0].Rule != "two" || e[0].Reason != "bad" ||
		!strings.Contains(e[0].After, "id: two") {
		t.Errorf("log --json: %+v", log)
	}
	var removed map[string]policy.Rule
	cliJSON(t, g, &removed, "rm", "two")
	if removed["removed"].ID != "two" {
		t.Errorf("rm --json: %+v", removed)
	}
}

func cliJSON(t *testing.T, g *policyGate, out any, args ...string) {
	t.Helper()
	code, stdout, stderr := g.cli(t, nil, append(args, "--json")...)
	if code != exitOK {
		t.Fatalf("policy %q --json: exit %d\n%s", args, code, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), out); err != nil {
		t.Fatalf("policy %q --json: %v\n%s", args, err, stdout)
	}
}

func TestPolicyCLIImport(t *testing.T) {
	g := newPolicyGate(t, true)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(
		good,
		[]byte("mode: report\ndeny_retracted: true\nrules:\n  - {id: x, action: deny, module: example.com/x, reason: no}\n"),
		0o644,
	)
	code, stdout, stderr := g.cli(t, nil, "import", good)
	if code != exitOK || !strings.Contains(stdout, "mode: report") || g.file.Current().Mode != policy.Report {
		t.Fatalf("import: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = g.cli(t, nil, "test", "example.com/x@v1.0.0")
	if code != exitOK || !strings.Contains(stdout, "report mode") {
		t.Errorf("test in report mode: exit %d\n%s", code, stdout)
	}
	goodJSON := filepath.Join(dir, "p.json")
	os.WriteFile(goodJSON, []byte(`{"default":"deny"}`), 0o644)
	if code, _, stderr := g.cli(t, nil, "import", goodJSON); code != exitOK || g.file.Current().Default != policy.Deny {
		t.Errorf("import JSON: exit %d %s", code, stderr)
	}
	before, _ := os.ReadFile(g.policyPath)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(
		bad,
		[]byte("rules:\n  - id: y\n    action: deny\n    module: example.com/y\n    versions: <=1.2\n    reason: r\n"),
		0o644,
	)
	code, _, stderr = g.cli(t, nil, "import", bad)
	if code != exitFail || !strings.Contains(stderr, "400") || !strings.Contains(stderr, "rules[0].versions") ||
		!strings.Contains(stderr, "line 5") {
		t.Errorf("import invalid: exit %d\n%s", code, stderr)
	}
	if after, _ := os.ReadFile(g.policyPath); string(after) != string(before) {
		t.Error("an invalid import changed the policy file")
	}
}

func TestPolicyCLIRefusals(t *testing.T) {
	g := newPolicyGate(t, true)
	noToken := newPolicyGate(t, false)
	before, _ := os.ReadFile(g.policyPath)
	tests := []struct {
		name string
		g    *policyGate
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{
			"no token",
			noToken,
			nil,
			[]string{"deny", "example.com/bad", "--reason", "r"},
			exitFail,
			[]string{"401", "no admin token", "MODGATE_ADMIN_TOKEN"},
		},
		{
			"wrong token",
			g,
			map[string]string{"MODGATE_ADMIN_TOKEN": "wrong"},
			[]string{"deny", "example.com/bad", "--reason", "r"},
			exitFail,
			[]string{"401", "wrong token"},
		},
		{
			"wrong token import",
			g,
			map[string]string{"MODGATE_ADMIN_TOKEN": "wrong"},
			[]string{"rm", "x"},
			exitFail,
			[]string{"401"},
		},
		{
			"invalid module",
			g,
			nil,
			[]string{"deny", "example.com/a b", "--reason", "r"},
			exitFail,
			[]string{"400", "rule.module"},
		},
		{
			"invalid constraint",
			g,
			nil,
			[]string{"deny", "example.com/a@<=1.2", "--reason", "r"},
			exitFail,
			[]string{"400", "rule.versions", "not a semantic version"},
		},
		{"invalid id", g, nil, []string{"allow", "example.com/a", "--id", "a/b"}, exitFail, []string{"400", "rule.id"}},
		{"deny without reason", g, nil, []string{"deny", "example.com/a"}, exitUsage, []string{"--reason"}},
		{"two patterns", g, nil, []string{"deny", "a", "b", "--reason", "r"}, exitUsage, []string{"accepts 1 arg"}},
		{"test without version", g, nil, []string{"test", "example.com/a"}, exitUsage, []string{"MODULE@VERSION"}},
		{"test bad version", g, nil, []string{"test", "example.com/a@latest"}, exitFail, []string{"400", "version"}},
		{"unknown flag", g, nil, []string{"list", "--colour"}, exitUsage, []string{"unknown flag"}},
		{"cert over http", g, nil, []string{"list", "--cert", "c.pem", "--key", "k.pem"}, exitUsage, []string{"https"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := tt.g.cli(t, tt.env, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	if after, _ := os.ReadFile(g.policyPath); string(after) != string(before) {
		t.Error("refused commands changed the policy file")
	}
	env := map[string]string{"MODGATE_ADMIN": "http://127.0.0.1:1", "MODGATE_ADMIN_TOKEN": "x"}
	if code, _, stderr := runCmd(t, env, "policy", "list"); code != exitFail ||
		!strings.Contains(stderr, "is modgate serve running") {
		t.Errorf("gate not running (admin URL from MODGATE_ADMIN): exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCmd(t, nil, "policy"); code != exitUsage {
		t.Errorf("policy without a subcommand: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCmd(t, nil, "policy", "bogus"); code != exitUsage {
		t.Errorf("policy bogus: exit %d\n%s", code, stderr)
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, policy.DefaultFile(), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(
		bad,
		[]byte(
			"mode: enforce\nrules:\n  - id: a\n    action: deny\n    module: m\n  - id: a\n    action: allow\n    module: m\n    versions: x\n",
		),
		0o644,
	)
	code, stdout, _ := runCmd(t, nil, "policy", "check", good)
	if code != exitOK || !strings.Contains(stdout, "ok: mode enforce, default allow, 0 rules") {
		t.Errorf("check good: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr := runCmd(t, nil, "policy", "check", bad)
	for _, want := range []string{bad + ":3: rules[0].reason: a deny rule needs a reason", bad + ":6: rules[1].id: duplicate", bad + ":9: rules[1].versions:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check bad: stdout lacks %q:\n%s", want, stdout)
		}
	}
	if code != exitFail || !strings.Contains(stderr, "invalid policy (3 problems)") {
		t.Errorf("check bad: exit %d\n%s", code, stderr)
	}
	code, stdout, _ = runCmd(t, nil, "policy", "check", bad, "--json")
	var out struct {
		OK       bool                      `json:"ok"`
		Problems []*policy.ValidationError `json:"problems"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || code != exitFail || out.OK || len(out.Problems) != 3 ||
		out.Problems[0].Field != "rules[0].reason" {
		t.Errorf("check --json: exit %d %+v %v", code, out, err)
	}
	if code, _, _ := runCmd(t, nil, "policy", "check", filepath.Join(dir, "missing.yaml")); code != exitFail {
		t.Errorf("check missing: exit %d", code)
	}
	if code, _, _ := runCmd(t, nil, "policy", "check"); code != exitUsage {
		t.Errorf("check without a file: exit %d", code)
	}
}

func TestSplitPattern(t *testing.T) {
	tests := []struct{ in, pattern, constraint, commit string }{
		{"example.com/bad", "example.com/bad", "", ""},
		{"example.com/bad@<v1.2.0", "example.com/bad", "<v1.2.0", ""},
		{"example.com/bad@v1.2.0", "example.com/bad", "v1.2.0", ""},
		{"example.com/bad@>=v1.0.0 <v2.0.0", "example.com/bad", ">=v1.0.0 <v2.0.0", ""},
		{"example.com/bad@=v1.0.0", "example.com/bad", "=v1.0.0", ""},
		{"user@host.example/m", "user@host.example/m", "", ""},
		{"a@b/m@v1.0.0", "a@b/m", "v1.0.0", ""},
		{"example.com/m@", "example.com/m@", "", ""},
		{"example.com/m@latest", "example.com/m@latest", "", ""},
		{"example.com/m@commit:0123456789ab", "example.com/m", "", "0123456789ab"},
		{"example.com/m@commit:", "example.com/m", "", ""},
	}
	for _, tt := range tests {
		if p, c, h := splitPattern(tt.in); p != tt.pattern || c != tt.constraint || h != tt.commit {
			t.Errorf("splitPattern(%q) = %q, %q, %q; want %q, %q, %q", tt.in, p, c, h, tt.pattern, tt.constraint, tt.commit)
		}
	}
}

func TestPolicyCLIClientCertificate(t *testing.T) {
	g := newPolicyGate(t, false) // no token: the certificate must do
	ca, err := pki.NewCA([]string{"proxy.golang.org", pki.AdminName})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Save(g.dataDir); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "certs")
	code, stdout, stderr := runCmd(t, nil, "ca", "issue-client", "alice", "--out", out, "--data-dir", g.dataDir)
	if code != exitOK || !strings.Contains(stdout, "alice-key.pem") {
		t.Fatalf("ca issue-client: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, _ := runCmd(t, nil, "ca", "issue-client", "alice", "--out", out, "--data-dir", g.dataDir); code != exitFail {
		t.Errorf("issue-client over existing files: exit %d", code)
	}
	if code, _, _ := runCmd(t, nil, "ca", "issue-client", "../x", "--out", out, "--data-dir", g.dataDir); code != exitUsage {
		t.Errorf("issue-client with a bad name: exit %d", code)
	}
	tlsCfg, err := ca.AdminTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	pool := tlsCfg.ClientCAs
	mux := http.NewServeMux()
	admin.NewPolicyAPI(admin.PolicyAPIConfig{File: g.file}).Register(mux)
	srv := httptest.NewUnstartedServer(admin.RequireAuth(filepath.Join(g.dataDir, adminTokenFile), pool, mux))
	srv.TLS = tlsCfg
	srv.StartTLS()
	defer srv.Close()
	args := []string{"policy", "allow", "corp.example.com", "--admin", srv.URL, "--data-dir", g.dataDir,
		"--cert", filepath.Join(out, "alice.pem"), "--key", filepath.Join(out, "alice-key.pem")}
	if code, stdout, stderr := runCmd(t, nil, args...); code != exitOK || !strings.Contains(stdout, "added rule allow-1") {
		t.Fatalf("allow with a client certificate: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCmd(t, nil, "policy", "list", "--admin", srv.URL, "--data-dir", g.dataDir); code != exitFail ||
		!strings.Contains(stderr, "401") {
		t.Errorf("https without a certificate or token: exit %d\n%s", code, stderr)
	}
}

func TestInitWritesDefaultPolicyOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir); code != exitOK {
		t.Fatalf("init: %s", stderr)
	}
	path := filepath.Join(dir, policyFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("policy file: %v", err)
	}
	if _, err := policy.OpenFile(context.Background(), path, nil); err != nil {
		t.Errorf("default policy: %v", err)
	}
	os.WriteFile(path, []byte("mode: report\n"), 0o644)
	if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir); code != exitOK {
		t.Fatalf("second init: %s", stderr)
	}
	if b, _ := os.ReadFile(path); string(b) != "mode: report\n" {
		t.Error("init overwrote the policy file")
	}
	ca, err := pki.Load(dir)
	if err != nil || !ca.Permits(pki.AdminName) {
		t.Errorf("a new CA does not permit %s: %v", pki.AdminName, err)
	}
}
