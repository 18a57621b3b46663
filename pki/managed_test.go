package pki

// These tests use names under modgate.test of their own: certmagic waits
// on concurrent issuance per name, process-wide (see leaves_test.go).

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// managedNamesCA permits the intercepted test hosts and modgate.test.
func managedNamesCA(tb testing.TB) *CA {
	return newTestCA(tb, append([]string{"modgate.test"}, testNames...)...)
}

func TestLeavesManageRefuses(t *testing.T) {
	ca := managedNamesCA(t)
	allow := func(name string) bool { return name != "denied.modgate.test" }
	tests := []struct {
		name  string
		names []string
		want  error
	}{
		{"outside the name constraints", []string{"gate.corp.example"}, ErrNotPermitted},
		{"one of several outside", []string{"ok.modgate.test", "evil.example"}, ErrNotPermitted},
		{"not allowed", []string{"denied.modgate.test"}, ErrNotAllowed},
		{"IP address", []string{"127.0.0.1"}, ErrInvalidName},
		{"wildcard", []string{"*.modgate.test"}, ErrInvalidName},
		{"none", nil, ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLeaves(t, LeavesConfig{CA: ca, Allow: allow})
			err := l.Manage(testContext(t), tc.names)
			if !errors.Is(err, tc.want) {
				t.Errorf("Manage(%q) = %v, want %v", tc.names, err, tc.want)
			}
			if got := l.Issued(); got != 0 {
				t.Errorf("Issued() = %d after a refusal, want 0", got)
			}
		})
	}
}

func TestLeavesManageIssuesUpFront(t *testing.T) {
	ca := managedNamesCA(t)
	dir := t.TempDir()
	const name = "upfront.modgate.test"
	l := newTestLeaves(t, LeavesConfig{CA: ca, Dir: dir})
	if err := l.Manage(testContext(t), []string{"UpFront.modgate.test"}); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if got := l.Issued(); got != 1 {
		t.Fatalf("Issued() = %d right after Manage, want 1 (before any handshake)", got)
	}
	srv := startTLSServer(t, l.ManagedTLSConfig())
	var serial string
	for _, sni := range []string{name, name, ""} {
		cfg := clientConfig(ca, name)
		if sni == "" {
			// No SNI: the first managed name's certificate, verified as such.
			cfg.ServerName = ""
			cfg.InsecureSkipVerify = true
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				_, err := cs.PeerCertificates[0].Verify(verifyOpts(ca, name))
				return err
			}
		}
		leaf, err := srv.dial(testContext(t), cfg)
		if err != nil {
			t.Fatalf("handshake (SNI %q): %v (server: %v)", sni, err, <-srv.errs)
		}
		if serial != "" && leaf.SerialNumber.String() != serial {
			t.Errorf("handshake (SNI %q) served serial %s, want %s", sni, leaf.SerialNumber, serial)
		}
		serial = leaf.SerialNumber.String()
	}
	if got := l.Issued(); got != 1 {
		t.Errorf("Issued() = %d after handshakes, want 1", got)
	}
	checkPrivateStorage(t, filepath.Join(dir, "certs"))

	// A restart loads the stored certificate instead of issuing again.
	l.Stop()
	l2 := newTestLeaves(t, LeavesConfig{CA: ca, Dir: dir})
	if err := l2.Manage(testContext(t), []string{name}); err != nil {
		t.Fatalf("Manage after restart: %v", err)
	}
	srv2 := startTLSServer(t, l2.ManagedTLSConfig())
	leaf, err := srv2.dial(testContext(t), clientConfig(ca, name))
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if l2.Issued() != 0 || leaf.SerialNumber.String() != serial {
		t.Errorf("after restart: Issued() = %d, serial %s; want 0 and the stored %s", l2.Issued(), leaf.SerialNumber, serial)
	}
}

func TestLeavesManagedTLSConfigServesOnlyManagedNames(t *testing.T) {
	ca := managedNamesCA(t)
	l := newTestLeaves(t, LeavesConfig{CA: ca})
	if err := l.Manage(testContext(t), []string{"only.modgate.test"}); err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, l.ManagedTLSConfig())
	tests := []struct {
		name       string
		serverName string
		alpn       []string
	}{
		{"an intercepted host", "proxy.golang.org", nil},
		{"another permitted name", "other.modgate.test", nil},
		{"an ACME challenge", "only.modgate.test", []string{acmeTLSALPN}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig(ca, tc.serverName)
			cfg.NextProtos = tc.alpn
			if _, err := srv.dial(testContext(t), cfg); err == nil {
				t.Fatalf("handshake for %q succeeded", tc.serverName)
			}
			if err := <-srv.errs; err == nil {
				t.Errorf("server handshake for %q succeeded", tc.serverName)
			}
		})
	}
	if got := l.Issued(); got != 1 {
		t.Errorf("Issued() = %d, want 1 (nothing minted for refused names)", got)
	}
}

func TestLeavesManagedRenewedByMaintenance(t *testing.T) {
	ca := managedNamesCA(t)
	l := newTestLeaves(t, LeavesConfig{CA: ca, Storage: newMemStorage()})
	name := "renew-" + ca.Fingerprint()[:8] + ".modgate.test"
	if err := l.Manage(testContext(t), []string{name}); err != nil {
		t.Fatal(err)
	}
	srv := startTLSServer(t, l.ManagedTLSConfig())
	first, err := srv.dial(testContext(t), clientConfig(ca, name))
	if err != nil {
		t.Fatal(err)
	}
	// An on-demand leaf for an intercepted host, to show that maintenance
	// leaves it to handshakes.
	onDemand := startTLSServer(t, l.TLSConfig())
	if _, err := onDemand.dial(testContext(t), clientConfig(ca, "proxy.golang.org")); err != nil {
		t.Fatal(err)
	}
	if got := l.Issued(); got != 2 {
		t.Fatalf("Issued() = %d, want 2", got)
	}
	// Both leaves are now due; run what the maintenance loop runs each tick.
	// (Nothing else reads these fields: the loop's first tick is 10 min away.)
	l.managed.RenewalWindowRatio = 0.999
	l.magic.RenewalWindowRatio = 0.999
	if err := l.cache.RenewManagedCertificates(testContext(t)); err != nil {
		t.Fatalf("RenewManagedCertificates: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for l.Issued() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // time for a wrong second renewal
	if got := l.Issued(); got != 3 {
		t.Fatalf("Issued() = %d after maintenance, want 3 (the managed name renewed, the on-demand leaf not)", got)
	}
	for time.Now().Before(deadline) {
		leaf, err := srv.dial(testContext(t), clientConfig(ca, name))
		if err != nil {
			t.Fatal(err)
		}
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the renewed certificate is not served")
}

// checkPrivateStorage checks that dir is 0700 and that every key file
// below it is 0600.
func checkPrivateStorage(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o700 {
		t.Errorf("%s has mode %04o, want 0700", dir, mode)
	}
	keys := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".key") {
			return err
		}
		keys++
		info, err := d.Info()
		if err != nil {
			return err
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("key file %s has mode %04o, want 0600", path, mode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Errorf("no key files stored under %s", dir)
	}
}

// verifyOpts verifies a leaf for name against the CA.
func verifyOpts(ca *CA, name string) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.pool(), DNSName: name}
}
