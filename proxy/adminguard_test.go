package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
)

// TestAdminRefusesCrossSiteRequests sends the admin API, over TLS with a
// client certificate (which a browser attaches to any request), what a
// web page could make a browser send: "simple" bodies (text/plain, form)
// and foreign origins. None authenticates or changes anything; JSON from
// the listener's own origin (or from no browser at all) does.
func TestAdminRefusesCrossSiteRequests(t *testing.T) {
	ca, err := pki.NewCA([]string{"proxy.golang.org", pki.AdminName})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tg := newTestGate(t, nil, gateOptions{})
	dir := t.TempDir()
	policyPath, tokenPath := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "admin.token")
	if err := os.WriteFile(policyPath, policy.DefaultFile(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokenPath, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := policy.OpenFile(t.Context(), policyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	auditLog := audit.New(tg.cache)
	mux := http.NewServeMux()
	admin.NewPolicyAPI(admin.PolicyAPIConfig{File: file, Audit: auditLog}).Register(mux)
	admin.NewWitnessAPI(admin.WitnessAPIConfig{Witness: tg.witness, Audit: auditLog}).Register(mux)
	srvCfg, err := ca.AdminTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(admin.RequireAuth(tokenPath, pool, mux))
	ts.TLS = srvCfg
	ts.StartTLS()
	defer ts.Close()
	certPEM, keyPEM, err := ca.IssueClient("browser", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: pki.AdminName, Certificates: []tls.Certificate{pair}}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	if r := get(t, tg.url, modPath(t, depV100, ".mod")); r.status != 200 {
		t.Fatalf("mod: %d %s", r.status, r.body)
	}
	tg.fake.Fork()
	if r := get(t, tg.url, "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"); r.status != http.StatusBadGateway || !tg.witness.Forked() {
		t.Fatalf("lookup after the fork: %d %s", r.status, r.body)
	}
	own := ts.URL // https://127.0.0.1:port, the listener's origin
	allowAll := `{"rule":{"id":"evil","action":"allow","module":"*"}}`
	tests := []struct {
		name, method, path, contentType, body string
		header                                []string
		want                                  int
	}{
		{"text/plain rule, foreign Origin", "POST", "/api/v1/policy/rules", "text/plain", allowAll, []string{"Origin: https://evil.example"}, 403},
		{"text/plain rule, no Origin", "POST", "/api/v1/policy/rules", "text/plain", allowAll, nil, 415},
		{"form rule", "POST", "/api/v1/policy/rules", "application/x-www-form-urlencoded", allowAll, nil, 415},
		{"no Content-Type", "POST", "/api/v1/policy/rules", "", allowAll, nil, 415},
		{"multipart", "POST", "/api/v1/policy/rules", "multipart/form-data; boundary=x", allowAll, nil, 415},
		{"JSON rule, foreign Origin", "POST", "/api/v1/policy/rules", "application/json", allowAll, []string{"Origin: https://evil.example"}, 403},
		{"JSON rule, Origin null", "POST", "/api/v1/policy/rules", "application/json", allowAll, []string{"Origin: null"}, 403},
		{"JSON rule, own host over http", "POST", "/api/v1/policy/rules", "application/json", allowAll, []string{"Origin: " + strings.Replace(own, "https:", "http:", 1)}, 403},
		{"JSON rule, cross-site fetch", "POST", "/api/v1/policy/rules", "application/json", allowAll, []string{"Sec-Fetch-Site: cross-site"}, 403},
		{"text/plain policy import", "PUT", "/api/v1/policy", "text/plain", `{"yaml":"default: allow\n"}`, nil, 415},
		{"YAML policy import", "PUT", "/api/v1/policy", "application/yaml", "default: allow\n", nil, 415},
		{"text/plain clear-fork, foreign Origin", "POST", "/api/v1/witness/clear-fork", "text/plain", `{"reason":"x"}`, []string{"Origin: https://evil.example"}, 403},
		{"empty clear-fork, foreign Origin", "POST", "/api/v1/witness/clear-fork", "", "", []string{"Origin: https://evil.example"}, 403},
		{"empty clear-fork, cross-site fetch", "POST", "/api/v1/witness/clear-fork", "", "", []string{"Sec-Fetch-Site: same-site"}, 403},
		{"text/plain clear-fork", "POST", "/api/v1/witness/clear-fork", "text/plain", `{"reason":"x"}`, nil, 415},
		{"read, foreign Origin", "GET", "/api/v1/policy", "", "", []string{"Origin: https://evil.example"}, 403},
	}
	original, _ := os.ReadFile(policyPath)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if tt.contentType != "" {
				header = append(header, "Content-Type: "+tt.contentType)
			}
			r := doBody(t, client, tt.method, own+tt.path, tt.body, header)
			if r.status != tt.want || !strings.Contains(string(r.body), `"error"`) {
				t.Errorf("%d %s, want %d with a JSON error", r.status, r.body, tt.want)
			}
			if now, _ := os.ReadFile(policyPath); string(now) != string(original) {
				t.Fatalf("the policy file changed:\n%s", now)
			}
			if !tg.witness.Forked() {
				t.Fatal("the fork was cleared")
			}
		})
	}
	if entries, _ := auditLog.List(t.Context(), 0); len(entries) != 0 {
		t.Errorf("audit entries after refused requests: %+v", entries)
	}
	// The same requests as JSON from the listener's own origin, or from
	// a client that is no browser, go through.
	if r := doBody(t, client, "POST", own+"/api/v1/policy/rules", `{"rule":{"id":"ok","action":"deny","module":"example.com/x","reason":"r"}}`,
		[]string{"Content-Type: application/json; charset=utf-8", "Origin: " + own, "Sec-Fetch-Site: same-origin"}); r.status != http.StatusCreated {
		t.Errorf("JSON rule from the own origin: %d %s", r.status, r.body)
	}
	if r := doBody(t, client, "POST", own+"/api/v1/witness/clear-fork", `{"reason":"checked"}`, []string{"Content-Type: application/json"}); r.status != 200 || tg.witness.Forked() {
		t.Errorf("JSON clear-fork: %d %s", r.status, r.body)
	}
}

// doBody sends method url with body and the header lines, through client.
func doBody(t *testing.T, client *http.Client, method, url, body string, header []string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	return doReqWith(t, client, req)
}
