package main

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	pebbleca "github.com/letsencrypt/pebble/v2/ca"
	pebbledb "github.com/letsencrypt/pebble/v2/db"
	pebbleva "github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/modgate/modgate/pki"
)

// TestGOPROXYOverTLSFromACME runs serve --acme-ca against pebble, a real
// ACME server, in this process: pebble validates localhost with a
// TLS-ALPN-01 challenge on the gate's HTTPS listener, and the go command
// then downloads through that listener trusting pebble's root only.
func TestGOPROXYOverTLSFromACME(t *testing.T) {
	port := freePort(t)
	dirURL, tlsRootFile, issuedRootFile := startPebble(t, port)
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir, "--tls-listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "--tls-names", "localhost",
		"--acme-ca", dirURL, "--acme-ca-root", tlsRootFile, "--acme-email", "gate@corp.example",
		"--log-level", "debug") // certmagic's routine lines are debug lines
	if !g.logged("certificate obtained successfully") {
		t.Errorf("the gate did not log an ACME certificate:\n%s", g.Log())
	}
	c := newHTTPSClient(t, g, appMod)
	c.env = append(c.env, "SSL_CERT_FILE="+issuedRootFile)
	c.must(appDownload...)
	c.must("mod", "verify")
	checkGoSum(t, up, c)
	checkKeysPrivate(t, filepath.Join(dataDir, "acme"))
	if fi, err := os.Stat(filepath.Join(dataDir, "acme")); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("acme storage has mode %04o, want 0700", fi.Mode().Perm())
	}
	// The ACME CA vouches for the name: the interception CA stays as narrow.
	if ca, err := pki.Load(dataDir); err != nil || ca.Permits("localhost") {
		t.Errorf("with --acme-ca the interception CA permits localhost (%v)", err)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPebble starts pebble on loopback, validating TLS-ALPN-01 challenges
// on tlsPort of each name. It returns the directory URL and PEM files of
// the directory's TLS root and of the root of the certificates it issues.
func startPebble(t *testing.T, tlsPort int) (dirURL, tlsRootFile, issuedRootFile string) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	logger := log.New(io.Discard, "", 0)
	db := pebbledb.NewMemoryStore()
	ca := pebbleca.New(logger, db, "", "ecdsa", 0, 1, map[string]pebbleca.Profile{"default": {Description: "test"}})
	va := pebbleva.New(logger, 0, tlsPort, false, "", db)
	front := wfe.New(logger, db, va, ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	srv := httptest.NewTLSServer(front.Handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	tlsRootFile, issuedRootFile = filepath.Join(dir, "acme-tls.pem"), filepath.Join(dir, "pebble-root.pem")
	for file, der := range map[string][]byte{tlsRootFile: srv.Certificate().Raw, issuedRootFile: ca.GetRootCert(0).DER} {
		if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return srv.URL + wfe.DirectoryPath, tlsRootFile, issuedRootFile
}
