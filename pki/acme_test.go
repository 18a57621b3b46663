package pki

// The ACME tests run a real ACME server in-process: pebble's web front
// end, CA and validation authority, wired as its main does. The validation
// authority really validates: it resolves the name, connects to the TLS
// listener under test and checks the TLS-ALPN-01 challenge certificate
// that certmagic presents there (PEBBLE_VA_ALWAYS_VALID stays off).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	pebbleca "github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	pebbleva "github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// pebble is an in-process ACME server.
type pebble struct {
	dirURL   string         // the ACME directory
	tlsRoots *x509.CertPool // trust for the directory's own TLS
	roots    *x509.CertPool // the root of the certificates it issues
}

// startPebble starts pebble on loopback. Its validation authority checks
// TLS-ALPN-01 challenges on tlsPort of each name.
func startPebble(t *testing.T, tlsPort int) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random waits before validating
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no deliberately rejected nonces
	t.Setenv("PEBBLE_AUTHZREUSE", "0")      // every order is validated afresh
	logger := log.New(io.Discard, "", 0)
	if testing.Verbose() {
		logger = log.New(testWriter{t}, "pebble ", 0)
	}
	db := pebbledb.NewMemoryStore()
	ca := pebbleca.New(logger, db, "", "ecdsa", 0, 1, map[string]pebbleca.Profile{"default": {Description: "test"}})
	va := pebbleva.New(logger, 0, tlsPort, false, "", db)
	front := wfe.New(logger, db, va, ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	p := &pebble{dirURL: srv.URL + wfe.DirectoryPath, tlsRoots: x509.NewCertPool(), roots: x509.NewCertPool()}
	p.tlsRoots.AddCert(srv.Certificate())
	p.roots.AddCert(ca.GetRootCert(0).Cert)
	return p
}

// testWriter writes pebble's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// localhostListener listens on the address "localhost" resolves to first,
// which is the address pebble's validation authority connects to.
func localhostListener(t *testing.T) net.Listener {
	t.Helper()
	addrs, err := net.DefaultResolver.LookupHost(context.Background(), "localhost")
	if err != nil || len(addrs) == 0 {
		t.Skipf("localhost does not resolve: %v", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newTestACME makes ACME against p for the listener at addr.
func newTestACME(t *testing.T, p *pebble, dir, addr string) *ACME {
	t.Helper()
	logger := zap.NewNop()
	if testing.Verbose() {
		logger = zap.NewExample()
	}
	a, err := NewACME(context.Background(), ACMEConfig{CA: p.dirURL, Email: "gate@corp.example", TrustedRoots: p.tlsRoots, Dir: dir, ListenAddr: addr, Logger: logger})
	if err != nil {
		t.Fatalf("NewACME: %v", err)
	}
	t.Cleanup(a.Stop)
	return a
}

// lazyTLS serves the ManagedTLSConfig of the ACME that a holds at
// handshake time.
func lazyTLS(a *atomic.Pointer[ACME]) *tls.Config {
	return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return a.Load().ManagedTLSConfig(), nil
	}}
}

func TestACMEObtainsRenewsAndServes(t *testing.T) {
	ln := localhostListener(t)
	p := startPebble(t, ln.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	var current atomic.Pointer[ACME]
	srv := serveTLS(t, ln, lazyTLS(&current))
	a := newTestACME(t, p, dir, ln.Addr().String())
	current.Store(a)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.Manage(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	client := &tls.Config{RootCAs: p.roots, ServerName: "localhost"}
	leaf, err := srv.dial(ctx, client)
	if err != nil {
		t.Fatalf("handshake verified against pebble's root: %v", err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("served certificate names %q, want [localhost]", leaf.DNSNames)
	}
	checkPrivateStorage(t, filepath.Join(dir, "acme"))

	// Names that were not managed are refused, without asking the CA.
	other := &tls.Config{RootCAs: p.roots, ServerName: "other.localhost"}
	if _, err := srv.dial(ctx, other); err == nil {
		t.Error("handshake for an unmanaged name succeeded")
	}

	// Renewal: certmagic's maintenance replaces a certificate in its
	// renewal window with a new one from the CA.
	a.magic.RenewalWindowRatio = 1 // due from NotBefore on
	a.magic.DisableARI = true
	if err := a.cache.RenewManagedCertificates(ctx); err != nil {
		t.Fatalf("RenewManagedCertificates: %v", err)
	}
	renewed := waitNewSerial(ctx, t, srv, client, leaf)

	// A restart loads the stored certificate: no new order.
	a.Stop()
	a = newTestACME(t, p, dir, ln.Addr().String())
	current.Store(a)
	if err := a.Manage(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("Manage after restart: %v", err)
	}
	again, err := srv.dial(ctx, client)
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if again.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("after restart served serial %s, want the stored %s", again.SerialNumber, renewed.SerialNumber)
	}
}

// waitNewSerial dials until the server presents a certificate other than
// old, and returns it.
func waitNewSerial(ctx context.Context, t *testing.T, srv *tlsServer, cfg *tls.Config, old *x509.Certificate) *x509.Certificate {
	t.Helper()
	for ctx.Err() == nil {
		leaf, err := srv.dial(ctx, cfg)
		if err != nil {
			t.Fatalf("handshake while renewing: %v", err)
		}
		if leaf.SerialNumber.Cmp(old.SerialNumber) != 0 {
			return leaf
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the certificate was not renewed")
	return nil
}

func TestACMEManageReportsFailure(t *testing.T) {
	// Nothing answers the challenge: the validation authority connects to
	// a closed port, and Manage returns the CA's verdict.
	closed := localhostListener(t)
	port := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	p := startPebble(t, port)
	ln := localhostListener(t)
	var current atomic.Pointer[ACME]
	serveTLS(t, ln, lazyTLS(&current))
	a := newTestACME(t, p, t.TempDir(), ln.Addr().String())
	current.Store(a)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := a.Manage(ctx, []string{"localhost"})
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ACME CA") {
		t.Fatalf("Manage = %v, want the CA's refusal", err)
	}
	t.Logf("Manage: %v", err)
}

func TestNewACMEErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ACMEConfig
	}{
		{"no CA", ACMEConfig{Dir: t.TempDir(), ListenAddr: "127.0.0.1:8443"}},
		{"plain http CA", ACMEConfig{CA: "http://acme.corp.example/dir", Dir: t.TempDir(), ListenAddr: "127.0.0.1:8443"}},
		{"no listen address", ACMEConfig{CA: "https://acme.corp.example/dir", Dir: t.TempDir()}},
		{"unbound port", ACMEConfig{CA: "https://acme.corp.example/dir", Dir: t.TempDir(), ListenAddr: "127.0.0.1:0"}},
		{"no storage", ACMEConfig{CA: "https://acme.corp.example/dir", ListenAddr: "127.0.0.1:8443"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if a, err := NewACME(context.Background(), tc.cfg); err == nil {
				a.Stop()
				t.Fatal("NewACME succeeded")
			}
		})
	}
}
