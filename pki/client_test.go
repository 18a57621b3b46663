package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueClient(t *testing.T) {
	ca := newTestCA(t, "proxy.golang.org", AdminName)
	certPEM, keyPEM, err := ca.IssueClient("alice@ops", 0)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	if leaf.Subject.CommonName != "alice@ops" || len(leaf.DNSNames) != 0 || leaf.IsCA {
		t.Errorf("leaf: CN %q, DNS %q, CA %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IsCA)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage %v, want ClientAuth only", leaf.ExtKeyUsage)
	}
	if d := time.Until(leaf.NotAfter); d < DefaultClientLifetime-2*time.Hour || d > DefaultClientLifetime {
		t.Errorf("lifetime %v", d)
	}
	opts := x509.VerifyOptions{Roots: ca.pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("client certificate does not verify against the name-constrained CA: %v", err)
	}
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("client certificate verifies for server authentication")
	}
	for _, bad := range []string{"", "a/b", "../x", ".hidden", "a b", string(make([]byte, 65))} {
		if _, _, err := ca.IssueClient(bad, 0); !errors.Is(err, ErrInvalidName) {
			t.Errorf("IssueClient(%q): %v", bad, err)
		}
	}
}

func TestWriteClient(t *testing.T) {
	ca := newTestCA(t)
	dir := filepath.Join(t.TempDir(), "out")
	certPath, keyPath, err := ca.WriteClient(dir, "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600, dir: 0o700} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	if filepath.Base(certPath) != "ci.pem" || filepath.Base(keyPath) != "ci-key.pem" {
		t.Errorf("paths %s %s", certPath, keyPath)
	}
	b, _ := os.ReadFile(certPath)
	if block, _ := pem.Decode(b); block == nil || block.Type != "CERTIFICATE" {
		t.Error("no certificate PEM")
	}
	if _, _, err := ca.WriteClient(dir, "ci", time.Hour); !errors.Is(err, ErrExists) {
		t.Errorf("second WriteClient: %v, want ErrExists", err)
	}
}

func TestAdminTLSConfig(t *testing.T) {
	if _, err := newTestCA(t).AdminTLSConfig(); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("CA without %s: %v", AdminName, err)
	}
	ca := newTestCA(t, "proxy.golang.org", AdminName)
	srvCfg, err := ca.AdminTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _ := ca.IssueClient("bob", 0)
	pair, _ := tls.X509KeyPair(certPEM, keyPEM)
	other := newTestCA(t, AdminName)
	otherPEM, otherKey, _ := other.IssueClient("mallory", 0)
	otherPair, _ := tls.X509KeyPair(otherPEM, otherKey)
	tests := []struct {
		name     string
		certs    []tls.Certificate
		ok       bool
		verified bool
	}{
		{"no client certificate", nil, true, false},
		{"client certificate from the CA", []tls.Certificate{pair}, true, true},
		{"client certificate from another CA", []tls.Certificate{otherPair}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verified, err := handshake(t, srvCfg, &tls.Config{RootCAs: ca.pool(), ServerName: AdminName, Certificates: tt.certs})
			if (err == nil) != tt.ok || verified != tt.verified {
				t.Errorf("handshake: err %v, verified %v; want ok %v verified %v", err, verified, tt.ok, tt.verified)
			}
		})
	}
}

// handshake runs a TLS handshake over a pipe and reports whether the
// server verified a client certificate.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (bool, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	res := make(chan bool, 1)
	go func() {
		srv := tls.Server(a, srvCfg)
		err := srv.Handshake()
		res <- err == nil && len(srv.ConnectionState().VerifiedChains) > 0
		if err != nil {
			a.Close()
			return
		}
		io.Copy(io.Discard, srv)
	}()
	cli := tls.Client(b, cliCfg)
	err := cli.Handshake()
	if err == nil {
		// TLS 1.3 reports a refused client certificate on the first read.
		cli.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err = cli.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			err = nil
		}
	}
	return <-res, err
}
