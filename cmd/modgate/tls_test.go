package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/pki"
)

// TestGOPROXYOverTLS drives the real go command against the gate's own
// HTTPS endpoint: GOPROXY=https://localhost:PORT, no HTTPS_PROXY, the
// gate's CA as the only extra root and the enterprise key as GOSUMDB.
func TestGOPROXYOverTLS(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	tlsArgs := []string{"--tls-listen", "127.0.0.1:0", "--tls-names", "localhost"}
	up, g := fakeGate(t, dataDir, tlsArgs...)
	if g.tlsListen == "" {
		t.Fatalf("the serving log line has no tls_listen:\n%s", g.Log())
	}
	ca, err := pki.Load(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ca.Names(), "localhost") {
		t.Errorf("the first start's CA permits %q, want localhost among them", ca.Names())
	}

	c := newHTTPSClient(t, g, appMod)
	c.must(appDownload...)
	c.must("mod", "verify")
	checkGoSum(t, up, c)
	checkCoSigned(t, c, g.verifier, up.VerifierKey())

	if !g.logged(`"via":"goproxy-tls"`) {
		t.Errorf("the access log shows no request over the HTTPS endpoint:\n%s", g.Log())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	first := tlsLeaf(t, g, roots)
	checkKeysPrivate(t, filepath.Join(dataDir, "certs"))

	// A restart serves the stored certificate, and clients keep working.
	g.stop()
	g = startGate(t, dataDir, append([]string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey()}, tlsArgs...)...)
	if again := tlsLeaf(t, g, roots); !again.Equal(first) {
		t.Errorf("after a restart the endpoint serves serial %s, want the stored %s", again.SerialNumber, first.SerialNumber)
	}
	c = newHTTPSClient(t, g, appMod)
	c.must(appDownload...)
	checkGoSum(t, up, c)
}

// newHTTPSClient is a go client whose GOPROXY is the gate's HTTPS
// endpoint, reached as localhost, without HTTPS_PROXY.
func newHTTPSClient(t *testing.T, g *gateProc, goMod string) *goClient {
	t.Helper()
	_, port, err := net.SplitHostPort(g.tlsListen)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, g, viaGOPROXY, g.verifier, goMod)
	// The last value of a repeated variable wins.
	c.env = append(c.env, "GOPROXY=https://localhost:"+port)
	return c
}

// tlsLeaf handshakes with the gate's HTTPS endpoint as localhost,
// verifying against roots alone, and returns the leaf it presents.
func tlsLeaf(t *testing.T, g *gateProc, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	conn, err := d.DialContext(ctx, "tcp", g.tlsListen)
	if err != nil {
		t.Fatalf("TLS handshake with the HTTPS endpoint: %v", err)
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// checkKeysPrivate checks that every key file below dir is 0600.
func checkKeysPrivate(t *testing.T, dir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".key") {
			return err
		}
		n++
		fi, err := d.Info()
		if err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", path, fi.Mode().Perm())
		}
		return err
	})
	if err != nil || n == 0 {
		t.Errorf("no key files under %s (%v)", dir, err)
	}
}

func TestServeTLSNamesOutsideTheCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir); code != exitOK {
		t.Fatalf("init: %s", stderr)
	}
	code, _, stderr := runCmd(t, nil, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--tls-listen", "127.0.0.1:0", "--tls-names", "gate.corp.example")
	if code != exitFail {
		t.Fatalf("serve: exit %d, want %d:\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{"does not permit gate.corp.example", "move ca.pem and ca-key.pem", "modgate init", "--tls-names gate.corp.example", "redistribute", "--acme-ca"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("serve's error lacks %q:\n%s", want, stderr)
		}
	}
	// init with the name says the same, and changes nothing.
	before, _ := os.ReadFile(filepath.Join(dir, pki.CertFile))
	code, _, stderr = runCmd(t, nil, "init", "--data-dir", dir, "--tls-names", "gate.corp.example")
	if code != exitFail || !strings.Contains(stderr, "does not permit gate.corp.example") {
		t.Errorf("init --tls-names on an existing CA: exit %d:\n%s", code, stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, pki.CertFile)); string(after) != string(before) {
		t.Error("init replaced the CA")
	}
}

func TestInitTLSNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if code, _, stderr := runCmd(t, nil, "init", "--data-dir", dir, "--tls-names", "gate.corp.example,Mirror.corp.example"); code != exitOK {
		t.Fatalf("init: %s", stderr)
	}
	ca, err := pki.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"proxy.golang.org", "sum.golang.org", pki.AdminName, "gate.corp.example", "mirror.corp.example"} {
		if !ca.Permits(n) {
			t.Errorf("the new CA does not permit %s (it permits %q)", n, ca.Names())
		}
	}
}

func TestServeTLSFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"names without listener", []string{"--tls-names", "localhost"}, "--tls-names needs --tls-listen"},
		{"listener without names", []string{"--tls-listen", "127.0.0.1:0"}, "--tls-listen needs --tls-names"},
		{"ACME without listener", []string{"--acme-ca", "https://acme.corp.example/dir"}, "need --tls-listen"},
		{"ACME e-mail without ACME", []string{"--tls-listen", "127.0.0.1:0", "--tls-names", "localhost", "--acme-email", "a@corp.example"}, "need --acme-ca"},
		{"IP address", []string{"--tls-listen", "127.0.0.1:0", "--tls-names", "127.0.0.1"}, "IP address"},
		{"wildcard", []string{"--tls-listen", "127.0.0.1:0", "--tls-names", "*.corp.example"}, "invalid DNS name"},
		{"intercepted host", []string{"--tls-listen", "127.0.0.1:0", "--tls-names", "proxy.golang.org"}, "is an intercepted host"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--data-dir", dir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)
			code, _, stderr := runCmd(t, nil, args...)
			if code != exitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, exitUsage, tc.want, stderr)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a usage error created the data directory")
			}
		})
	}
}
