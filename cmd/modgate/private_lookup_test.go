package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrivateLookupsStayInside runs the real binary with a private
// pattern from --private and one from the policy's private: list, and
// checks that checksum-database lookups of those modules are refused by
// the gate itself (403 with the reason) and never forwarded to the
// upstream database: through interception (the go command with
// HTTPS_PROXY, and a direct https://sum.golang.org lookup), and through the
// GOPROXY endpoint.
func TestPrivateLookupsStayInside(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("private:\n  - example.com/lib\nrules: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	up, g := fakeGate(t, filepath.Join(dir, "data"), "--private", "example.com/dep", "--policy", policyFile)

	// The go command, intercepted, without GONOSUMDB: the gate refuses.
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	out, err := c.run("mod", "download", "example.com/dep@v1.0.0")
	if err == nil || !strings.Contains(out, "403") || !strings.Contains(out, "example.com/dep is private") || !strings.Contains(out, "GONOSUMDB=example.com/dep") {
		t.Errorf("go mod download of a private module without GONOSUMDB: err=%v, want the gate's 403 and its advice:\n%s", err, out)
	}
	// With GONOSUMDB it does not ask, and gets the module.
	c = newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.env = append(c.env, "GONOSUMDB=example.com/dep")
	c.must("mod", "download", "example.com/dep@v1.0.0")

	// A direct lookup at https://sum.golang.org, intercepted.
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(g.dataDir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("reading ca.pem: %v", err)
	}
	intercepted := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: g.listen}), TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	plain := &http.Client{Timeout: 30 * time.Second}
	for _, tt := range []struct {
		name, url, want string
		client          *http.Client
	}{
		{"intercepted sum.golang.org", "https://sum.golang.org/lookup/example.com/dep@v1.0.0", "example.com/dep is private (pattern example.com/dep)", intercepted},
		{"intercepted proxy.golang.org/sumdb", "https://proxy.golang.org/sumdb/sum.golang.org/lookup/example.com/lib@v1.1.0", "example.com/lib is private (pattern example.com/lib)", intercepted},
		{"GOPROXY endpoint", "http://" + g.listen + "/sumdb/sum.golang.org/lookup/example.com/lib/sub@v1.0.0", "GONOSUMDB=example.com/lib", plain},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), tt.want) ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
				t.Errorf("GET %s: %d %q, want 403 text/plain mentioning %q", tt.url, resp.StatusCode, body, tt.want)
			}
		})
	}
	// A public module is still looked up.
	c = newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("mod", "download", "example.com/bad@v1.2.0")

	var lookups []string
	for _, p := range up.RequestLog() {
		if strings.Contains(p, "/lookup/") {
			lookups = append(lookups, p)
		}
	}
	if got := strings.Join(lookups, "\n"); strings.Contains(got, "example.com/dep") || strings.Contains(got, "example.com/lib") ||
		!strings.Contains(got, "example.com/bad@v1.2.0") {
		t.Errorf("lookups that reached the upstream checksum database:\n%s\nwant example.com/bad only", got)
	}
}
