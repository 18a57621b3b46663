package admin

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/audit"
)

const adminTestToken = "0123456789abcdef0123456789abcdef"

// adminFixture is a policy API behind RequireAuth over a temporary
// policy file.
type adminFixture struct {
	dir, policyPath, tokenPath string
	file                       *policy.File
	audit                      *audit.Log
	handler                    http.Handler
	srv                        *httptest.Server
	now                        time.Time
}

func newAdminFixture(t *testing.T, clientCAs *x509.CertPool) *adminFixture {
	t.Helper()
	ctx := context.Background()
	f := &adminFixture{dir: t.TempDir(), now: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	f.policyPath = filepath.Join(f.dir, "policy.yaml")
	f.tokenPath = filepath.Join(f.dir, "admin.token")
	if err := os.WriteFile(f.policyPath, policy.DefaultFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.tokenPath, []byte(adminTestToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.file, err = policy.OpenFile(ctx, f.policyPath, nil); err != nil {
		t.Fatal(err)
	}
	f.audit = audit.NewWith(audit.Config{Store: openAuditCache(t), Now: func() time.Time { return f.now }})
	api := NewPolicyAPI(PolicyAPIConfig{
		File: f.file, Audit: f.audit, Now: func() time.Time { return f.now },
		Facts: func(ctx context.Context, mod, version string) (policy.Facts, error) {
			if mod == "example.com/fresh" {
				return policy.Facts{Published: f.now.Add(-time.Hour), Now: f.now}, nil
			}
			return policy.Facts{Published: f.now.Add(-1000 * time.Hour), Now: f.now}, nil
		},
	})
	mux := http.NewServeMux()
	api.Register(mux)
	f.handler = RequireAuth(f.tokenPath, clientCAs, mux)
	f.srv = httptest.NewServer(f.handler)
	t.Cleanup(f.srv.Close)
	return f
}

// call makes an API request with the token (or none if token is "") and
// decodes a JSON answer into out (if not nil).
func (f *adminFixture) call(t *testing.T, token, method, path, contentType, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType == "" && body != "" {
		contentType = "application/json" // the API takes JSON bodies only
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: not JSON: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// yamlBody wraps a policy file's text as the API takes it.
func yamlBody(text string) string {
	b, _ := json.Marshal(map[string]string{"yaml": text})
	return string(b)
}

func tokenWho(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "token:" + hex.EncodeToString(sum[:4])
}

func TestRequireAdminToken(t *testing.T) {
	f := newAdminFixture(t, nil)
	original, _ := os.ReadFile(f.policyPath)
	addBody := `{"rule":{"action":"deny","module":"example.com/bad","reason":"r"}}`
	tests := []struct {
		name, auth string
		want       int
	}{
		{"no credentials", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token prefix", "Bearer " + adminTestToken[:10], http.StatusUnauthorized},
		{"other scheme", "Basic " + adminTestToken, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"right token", "Bearer " + adminTestToken, http.StatusOK},
		{"scheme is case-insensitive", "bearer " + adminTestToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/policy", nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body APIError
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusUnauthorized && (body.Error == "" || resp.Header.Get("WWW-Authenticate") == "") {
				t.Errorf("401 without a JSON error or WWW-Authenticate: %+v", body)
			}
		})
	}
	for _, tok := range []string{"", "wrong"} {
		for _, req := range [][3]string{
			{"POST", "/api/v1/policy/rules", addBody},
			{"PUT", "/api/v1/policy", "mode: report\n"},
			{"DELETE", "/api/v1/policy/rules/x", ""},
		} {
			if code := f.call(t, tok, req[0], req[1], "application/json", req[2], nil); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d", req[0], req[1], tok, code)
			}
		}
	}
	if after, _ := os.ReadFile(f.policyPath); string(after) != string(original) {
		t.Error("refused requests changed the policy file")
	}
	if entries, _ := f.audit.List(context.Background(), 0); len(entries) != 0 {
		t.Errorf("refused requests were audited: %+v", entries)
	}
}

func TestRequireAdminTokenFileChanges(t *testing.T) {
	f := newAdminFixture(t, nil)
	if code := f.call(t, adminTestToken, "GET", "/api/v1/policy", "", "", nil); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	newToken := "fedcba9876543210fedcba9876543210ff"
	os.WriteFile(f.tokenPath, []byte(newToken+"\n"), 0o600)
	if code := f.call(t, adminTestToken, "GET", "/api/v1/policy", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d", code)
	}
	if code := f.call(t, newToken, "GET", "/api/v1/policy", "", "", nil); code != http.StatusOK {
		t.Errorf("new token: %d", code)
	}
	os.Chmod(f.tokenPath, 0o644)
	if code := f.call(t, newToken, "GET", "/api/v1/policy", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("token file readable by others: %d", code)
	}
	os.Chmod(f.tokenPath, 0o600)
	os.WriteFile(f.tokenPath, nil, 0o600)
	if code := f.call(t, "x", "GET", "/api/v1/policy", "", "", nil); code != http.StatusUnauthorized {
		t.Errorf("empty token file: %d", code)
	}
}

func TestRequireAdminClientCertificate(t *testing.T) {
	ca, err := pki.NewCA([]string{"proxy.golang.org", pki.AdminName})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA([]string{pki.AdminName})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	f := newAdminFixture(t, pool)
	srvCfg, err := ca.AdminTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(f.handler)
	ts.TLS = srvCfg
	ts.StartTLS()
	defer ts.Close()
	client := func(c *pki.CA, name string) *http.Client {
		cfg := &tls.Config{RootCAs: pool, ServerName: pki.AdminName}
		if c != nil {
			certPEM, keyPEM, err := c.IssueClient(name, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			pair, _ := tls.X509KeyPair(certPEM, keyPEM)
			cfg.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	resp, err := client(
		ca,
		"alice",
	).Post(ts.URL+"/api/v1/policy/rules", "application/json",
		strings.NewReader(`{"rule":{"id":"c1","action":"allow","module":"corp.example.com"}}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("client certificate from the CA: %v %v", resp, err)
	}
	resp.Body.Close()
	entries, _ := f.audit.List(context.Background(), 1)
	if len(entries) != 1 || entries[0].Who != "cert:alice" {
		t.Errorf("audit entries %+v, want who cert:alice", entries)
	}
	if resp, err := client(nil, "").Get(ts.URL + "/api/v1/policy"); err != nil ||
		resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("TLS without a certificate or token: %v %v", resp, err)
	}
	if resp, err := client(other, "mallory").Get(ts.URL + "/api/v1/policy"); err == nil &&
		resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("certificate from another CA: %d", resp.StatusCode)
	}

	// Behind a TLS server that does not verify, RequireAuth verifies itself.
	certPEM, keyPEM, _ := other.IssueClient("mallory", time.Hour)
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/policy", nil)
	req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{pair.Leaf}}
	f.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("unverified certificate from another CA: %d", rec.Code)
	}
}

func TestPolicyAPIRules(t *testing.T) {
	f := newAdminFixture(t, nil)
	tok := adminTestToken
	var added AddRuleResponse
	deny := `{"rule":{"action":"deny","module":"example.com/bad","versions":"<v1.2.0","reason":"CVE-2099-0001"}}`
	if code := f.call(t, tok, "POST", "/api/v1/policy/rules", "", deny, &added); code != http.StatusCreated ||
		added.Rule.ID != "deny-1" ||
		added.Position != 0 {
		t.Fatalf("add: %d %+v", code, added)
	}
	first := `{"rule":{"id":"first","action":"allow","module":"corp.example.com/*","versions":["v1.0.0","v1.1.0"]},` +
		`"position":0}`
	if code := f.call(t, tok, "POST", "/api/v1/policy/rules", "", first, &added); code != http.StatusCreated ||
		added.Position != 0 ||
		added.Rule.Versions != "v1.0.0, v1.1.0" {
		t.Fatalf("add at 0: %d %+v", code, added)
	}
	f.call(
		t,
		tok,
		"POST",
		"/api/v1/policy/rules",
		"",
		`{"rule":{"action":"deny","module":"example.com/x","reason":"r"}}`,
		&added,
	)
	if added.Rule.ID != "deny-2" {
		t.Errorf("derived id %q, want deny-2", added.Rule.ID)
	}
	if ids := ruleIDs(f.file.Current()); ids != "deny-2,first,deny-1" { // a deny goes first by default
		t.Errorf("rules %s", ids)
	}
	errorsTests := []struct {
		name, body string
		status     int
		field      string
	}{
		{"duplicate id", `{"rule":{"id":"first","action":"allow","module":"m"}}`, http.StatusConflict, "rule.id"},
		{
			"bad versions",
			`{"rule":{"action":"deny","module":"m","versions":"<=1.2","reason":"r"}}`,
			http.StatusBadRequest,
			"rule.versions",
		},
		{
			"versions of the wrong type",
			`{"rule":{"action":"deny","module":"m","versions":3,"reason":"r"}}`,
			http.StatusBadRequest,
			"rule.versions",
		},
		{"no reason", `{"rule":{"action":"deny","module":"m"}}`, http.StatusBadRequest, "rule.reason"},
		{"bad action", `{"rule":{"action":"block","module":"m"}}`, http.StatusBadRequest, "rule.action"},
		{"bad module", `{"rule":{"action":"allow","module":"a b"}}`, http.StatusBadRequest, "rule.module"},
		{"bad position", `{"rule":{"action":"allow","module":"m"},"position":9}`, http.StatusBadRequest, "position"},
		{"negative position", `{"rule":{"action":"allow","module":"m"},"position":-2}`, http.StatusBadRequest, "position"},
		{"unknown field", `{"rule":{"action":"allow","module":"m"},"where":1}`, http.StatusBadRequest, ""},
		{"not JSON", `rule: x`, http.StatusBadRequest, ""},
	}
	for _, tt := range errorsTests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(f.policyPath)
			var e APIError
			if code := f.call(t, tok, "POST", "/api/v1/policy/rules", "application/json", tt.body, &e); code != tt.status ||
				e.Field != tt.field ||
				e.Error == "" {
				t.Errorf("status %d %+v; want %d field %q", code, e, tt.status, tt.field)
			}
			if after, _ := os.ReadFile(f.policyPath); string(after) != string(before) {
				t.Error("a refused change touched the file")
			}
		})
	}
	var e APIError
	if code := f.call(t, tok, "DELETE", "/api/v1/policy/rules/nope", "", "", &e); code != http.StatusNotFound ||
		e.Field != "id" {
		t.Errorf("delete unknown: %d %+v", code, e)
	}
	var removed map[string]policy.Rule
	if code := f.call(t, tok, "DELETE", "/api/v1/policy/rules/deny-1", "", "", &removed); code != http.StatusOK ||
		removed["removed"].Reason != "CVE-2099-0001" {
		t.Errorf("delete: %d %+v", code, removed)
	}
	onDisk, err := policy.OpenFile(context.Background(), f.policyPath, nil)
	if err != nil || ruleIDs(onDisk.Current()) != "deny-2,first" {
		t.Errorf("file after changes: %v %s", err, ruleIDs(onDisk.Current()))
	}
	var page AuditPage
	f.call(t, tok, "GET", "/api/v1/audit?limit=2", "", "", &page)
	got := page.Entries
	if len(got) != 2 || got[0].Action != audit.PolicyAdd || got[1].Action != audit.PolicyRemove ||
		got[1].Subject != "deny-1" ||
		got[1].Who != tokenWho(tok) ||
		!strings.Contains(got[1].Before, "deny-1") ||
		strings.Contains(got[1].After, "deny-1") {
		t.Errorf("audit entries %+v", got)
	}
	// An allow goes last by default; a rule that an earlier one shadows is
	// added, and the answer names the earlier rule.
	added = AddRuleResponse{}
	f.call(t, tok, "POST", "/api/v1/policy/rules", "",
		`{"rule":{"id":"late","action":"allow","module":"example.com/x/sub"}}`, &added)
	if added.Position != 2 || len(added.Shadows) != 1 || added.Shadows[0].By != "deny-2" || !added.Shadows[0].Full {
		t.Errorf("allow under an earlier deny of its whole module: %+v, want last (2) and shadowed by deny-2", added)
	}
	added = AddRuleResponse{}
	f.call(t, tok, "POST", "/api/v1/policy/rules", "",
		`{"rule":{"id":"last-deny","action":"deny","module":"corp.example.com/x","versions":"v1.1.0","reason":"r"},`+
			`"position":-1}`, &added)
	if added.Position != 3 || len(added.Shadows) != 1 || added.Shadows[0].By != "first" ||
		!strings.Contains(added.Shadows[0].Message, "never decides") {
		t.Errorf("deny put last under an allow of its versions: %+v, want position 3, shadowed by first", added)
	}
	if code := f.call(t, tok, "GET", "/api/v1/audit?limit=x", "", "", &e); code != http.StatusBadRequest ||
		e.Field != "limit" {
		t.Errorf("bad limit: %d %+v", code, e)
	}
	if code := f.call(t, tok, "GET", "/api/v1/nope", "", "", &e); code != http.StatusNotFound {
		t.Errorf("unknown endpoint: %d", code)
	}
}

func ruleIDs(p *policy.Policy) string {
	var ids []string
	for _, r := range p.Rules {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}

func TestPolicyAPIImportExport(t *testing.T) {
	f := newAdminFixture(t, nil)
	tok := adminTestToken
	yamlPolicy := "mode: report\ncooldown: 72h\nrules:\n" +
		"  - id: a\n    action: deny\n    module: example.com/a\n    reason: r\n"
	var out map[string]*policy.Policy
	if code := f.call(t, tok, "PUT", "/api/v1/policy", "", yamlBody(yamlPolicy), &out); code != http.StatusOK ||
		out["policy"].Mode != policy.Report {
		t.Fatalf("import YAML: %d %+v", code, out["policy"])
	}
	if f.file.Current().Cooldown != 72*time.Hour {
		t.Errorf("import not in force: %+v", f.file.Current())
	}
	var got policy.Policy
	f.call(t, tok, "GET", "/api/v1/policy", "", "", &got)
	if got.Cooldown != 72*time.Hour || ruleIDs(&got) != "a" {
		t.Errorf("GET policy: %+v", got)
	}
	jsonPolicy := `{"mode":"enforce","default":"deny","rules":[{"id":"b","action":"allow","module":"example.com/b"}]}`
	if code := f.call(t, tok, "PUT", "/api/v1/policy", "application/json", jsonPolicy, &out); code != http.StatusOK ||
		f.file.Current().Default != policy.Deny {
		t.Fatalf("import JSON: %d", code)
	}
	var e APIError
	bad := "rules:\n  - id: a\n    action: deny\n    module: m\n  - id: a\n    action: nope\n    module: m\n"
	if code := f.call(t, tok, "PUT", "/api/v1/policy", "", yamlBody(bad), &e); code != http.StatusBadRequest ||
		e.Field != "rules[0].reason" ||
		len(e.Problems) != 3 ||
		e.Problems[0].Line != 2 {
		t.Errorf("invalid import: %d %+v", code, e)
	}
	code := f.call(t, tok, "PUT", "/api/v1/policy", "application/json", `{"modes":"x"}`, &e)
	if code != http.StatusBadRequest {
		t.Errorf("invalid JSON import: %d", code)
	}
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/policy/export", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported, err := policy.Parse(body)
	if err != nil || !strings.HasPrefix(string(body), policy.Header) || ruleIDs(exported) != "b" {
		t.Errorf("export: %v\n%s", err, body)
	}
	entries, _ := f.audit.List(context.Background(), 0)
	if len(entries) != 2 || entries[0].Action != audit.PolicyReplace || entries[0].Subject != "policy" {
		t.Errorf("audit %+v", entries)
	}
}

func TestPolicyAPITest(t *testing.T) {
	f := newAdminFixture(t, nil)
	tok := adminTestToken
	f.call(
		t,
		tok,
		"PUT",
		"/api/v1/policy",
		"",
		yamlBody("cooldown: 72h\nrules:\n"+
			"  - {id: bad, action: deny, module: example.com/bad, versions: <v1.2.0, reason: CVE-2099-0001}\n"),
		nil,
	)
	tests := []struct {
		module, version string
		allowed         bool
		rule            string
	}{
		{"example.com/bad", "v1.1.0", false, "bad"},
		{"example.com/bad", "v1.2.0", true, "default"},
		{"example.com/fresh", "v1.0.0", false, "cooldown"},
	}
	for _, tt := range tests {
		var resp TestResponse
		code := f.call(
			t,
			tok,
			"POST",
			"/api/v1/policy/test",
			"",
			`{"module":"`+tt.module+`","version":"`+tt.version+`"}`,
			&resp,
		)
		if code != http.StatusOK || resp.Decision.Allowed != tt.allowed || resp.Decision.Rule != tt.rule ||
			resp.Facts.Now.IsZero() {
			t.Errorf("test %s@%s: %d %+v", tt.module, tt.version, code, resp)
		}
	}
	var e APIError
	badPath := `{"module":"Bad Path","version":"v1.0.0"}`
	if code := f.call(t, tok, "POST", "/api/v1/policy/test", "", badPath, &e); code != http.StatusBadRequest ||
		e.Field != "module" {
		t.Errorf("bad module: %d %+v", code, e)
	}
	badVersion := `{"module":"example.com/a","version":"1.0"}`
	if code := f.call(t, tok, "POST", "/api/v1/policy/test", "", badVersion, &e); code != http.StatusBadRequest ||
		e.Field != "version" {
		t.Errorf("bad version: %d %+v", code, e)
	}
	if entries, _ := f.audit.List(context.Background(), 0); len(entries) != 1 {
		t.Errorf("tests were audited: %d entries", len(entries))
	}
}

func TestPolicyAPIAuditsHandEdits(t *testing.T) {
	f := newAdminFixture(t, nil)
	ctx := context.Background()
	os.WriteFile(f.policyPath, []byte("mode: report\n"), 0o644)
	if err := f.file.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(f.policyPath, []byte("mode: loud\n"), 0o644)
	f.file.Reload(ctx)
	var e APIError
	allowM := `{"rule":{"action":"allow","module":"m"}}`
	if code := f.call(t, adminTestToken, "POST", "/api/v1/policy/rules", "", allowM, &e); code != http.StatusConflict {
		t.Errorf("change over a refused hand edit: %d %+v", code, e)
	}
	entries, _ := f.audit.List(ctx, 0)
	if len(entries) != 2 {
		t.Fatalf("audit %+v", entries)
	}
	if r := entries[0]; r.Action != audit.PolicyReload || r.Who != "file" || !strings.Contains(r.After, "mode: report") {
		t.Errorf("reload entry %+v", r)
	}
	if r := entries[1]; r.Action != audit.PolicyInvalid || r.After != "mode: loud\n" ||
		!strings.Contains(r.Reason, "not a mode") {
		t.Errorf("invalid entry %+v", r)
	}
	if f.file.Current().Mode != policy.Report {
		t.Error("the refused edit took effect")
	}
}

func openAuditCache(t *testing.T) *cache.Store {
	t.Helper()
	c, err := cache.Open(context.Background(), cache.Config{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
