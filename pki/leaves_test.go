package pki

// The Leaves tests do not run in parallel, and each test that may leave a
// background renewal running uses a server name of its own: certmagic
// coordinates concurrent issuance through process-wide maps keyed by name
// alone, so two Leaves issuing for the same name at the same time wait on
// each other (see the package notes in leaves.go).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// newTestLeaves makes Leaves over cfg (with a test CA and a temporary Dir
// unless cfg sets them) and stops them when the test ends.
func newTestLeaves(tb testing.TB, cfg LeavesConfig) *Leaves {
	tb.Helper()
	if cfg.CA == nil {
		cfg.CA = newTestCA(tb)
	}
	if cfg.Dir == "" && cfg.Storage == nil {
		cfg.Dir = tb.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	l, err := NewLeaves(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("NewLeaves: %v", err)
	}
	tb.Cleanup(l.Stop)
	return l
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestLeavesHandshake(t *testing.T) {
	ca := newTestCA(t)
	l := newTestLeaves(t, LeavesConfig{
		CA:    ca,
		Allow: func(name string) bool { return name != "sum.golang.org" },
	})
	srv := startTLSServer(t, l.TLSConfig())
	tests := []struct {
		name       string
		serverName string
		alpn       []string
		wantErr    error // the server's error; nil: the handshake succeeds
	}{
		{"intercepted host", "proxy.golang.org", nil, nil},
		{"upper-case SNI", "PROXY.golang.org", nil, nil},
		{"HTTP/1.1", "proxy.golang.org", []string{"h2", "http/1.1"}, nil},
		{"other site", "evil.example", nil, ErrNotPermitted},
		{"permitted but not allowed", "sum.golang.org", nil, ErrNotAllowed},
		{"ACME challenge", "proxy.golang.org", []string{"acme-tls/1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientConfig(ca, tc.serverName)
			cfg.NextProtos = tc.alpn
			leaf, err := srv.dial(testContext(t), cfg)
			serverErr := <-srv.errs
			if tc.wantErr != nil || slices.Contains(tc.alpn, acmeTLSALPN) {
				if err == nil {
					t.Fatal("handshake succeeded")
				}
				if tc.wantErr != nil && !errors.Is(serverErr, tc.wantErr) {
					t.Errorf("server error = %v, want %v", serverErr, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v (server: %v)", err, serverErr)
			}
			checkLeaf(t, ca, leaf, []string{strings.ToLower(tc.serverName)}, DefaultLeafLifetime)
		})
	}
	if got := l.Issued(); got != 1 {
		t.Errorf("Issued() = %d, want 1", got)
	}
}

func TestLeavesTLSConfig(t *testing.T) {
	l := newTestLeaves(t, LeavesConfig{})
	cfg := l.TLSConfig()
	if cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil ||
		len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Errorf("TLSConfig() = MinVersion %x, NextProtos %q, GetCertificate set %v",
			cfg.MinVersion, cfg.NextProtos, cfg.GetCertificate != nil)
	}
	ca := newTestCA(t)
	srv := startTLSServer(t, newTestLeaves(t, LeavesConfig{CA: ca}).TLSConfig())
	old := clientConfig(ca, "proxy.golang.org")
	old.MaxVersion = tls.VersionTLS11
	if _, err := srv.dial(testContext(t), old); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
}

func TestLeavesNoSNI(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name        string
		defaultName string
		wantErr     error
	}{
		{"no default", "", ErrNoServerName},
		{"default name", "sum.golang.org", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLeaves(t, LeavesConfig{CA: ca, DefaultName: tc.defaultName})
			srv := startTLSServer(t, l.TLSConfig())
			// With no ServerName the client sends no SNI; it then
			// verifies the leaf itself against the CA.
			var leaf *x509.Certificate
			cfg := &tls.Config{
				InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					leaf = cs.PeerCertificates[0]
					_, err := leaf.Verify(x509.VerifyOptions{Roots: ca.pool(), DNSName: tc.defaultName})
					return err
				},
			}
			_, err := srv.dial(testContext(t), cfg)
			serverErr := <-srv.errs
			if tc.wantErr != nil {
				if err == nil || !errors.Is(serverErr, tc.wantErr) {
					t.Fatalf("handshake = %v, server = %v; want %v", err, serverErr, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v (server: %v)", err, serverErr)
			}
			if leaf.DNSNames[0] != tc.defaultName {
				t.Errorf("leaf for %q, want %q", leaf.DNSNames, tc.defaultName)
			}
		})
	}
}

func TestLeavesIssueOnce(t *testing.T) {
	ca := newTestCA(t)
	l := newTestLeaves(t, LeavesConfig{CA: ca})
	srv := startTLSServer(t, l.TLSConfig())
	const concurrent, sequential = 20, 20
	serials := make(chan string, concurrent+sequential)
	dial := func() error {
		leaf, err := srv.dial(testContext(t), clientConfig(ca, "proxy.golang.org"))
		if err == nil {
			serials <- leaf.SerialNumber.String()
		}
		return err
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range concurrent {
		wg.Go(func() {
			<-start
			if err := dial(); err != nil {
				t.Errorf("concurrent handshake: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	for range sequential {
		if err := dial(); err != nil {
			t.Fatalf("reconnect: %v", err)
		}
	}
	close(serials)
	seen := map[string]bool{}
	for s := range serials {
		seen[s] = true
	}
	if got := l.Issued(); got != 1 || len(seen) != 1 {
		t.Errorf("Issued() = %d and %d distinct leaves served, want 1 and 1", got, len(seen))
	}
}

func TestLeavesRestartReusesStoredLeaf(t *testing.T) {
	ca := newTestCA(t)
	dir := t.TempDir()
	tests := []struct {
		name       string
		ca         *CA
		wantIssued int64
	}{
		{"first start", ca, 1},
		{"restart", ca, 0},
		{"new CA", newTestCA(t), 1}, // the old CA's leaf must not be served
	}
	var firstSerial string
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLeaves(t, LeavesConfig{CA: tc.ca, Dir: dir})
			defer l.Stop()
			srv := startTLSServer(t, l.TLSConfig())
			leaf, err := srv.dial(testContext(t), clientConfig(tc.ca, "proxy.golang.org"))
			if err != nil {
				t.Fatalf("handshake: %v (server: %v)", err, <-srv.errs)
			}
			if got := l.Issued(); got != tc.wantIssued {
				t.Errorf("Issued() = %d, want %d", got, tc.wantIssued)
			}
			serial := leaf.SerialNumber.String()
			switch {
			case firstSerial == "":
				firstSerial = serial
			case (serial == firstSerial) != (tc.wantIssued == 0):
				t.Errorf("served serial %s, first serial %s", serial, firstSerial)
			}
		})
	}
}

func TestLeavesStoragePrivate(t *testing.T) {
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	l := newTestLeaves(t, LeavesConfig{CA: ca, Dir: dir})
	srv := startTLSServer(t, l.TLSConfig())
	if _, err := srv.dial(testContext(t), clientConfig(ca, "sum.golang.org")); err != nil {
		t.Fatal(err)
	}
	var keys int
	err := filepath.WalkDir(certs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("directory %s has mode %04o", path, fi.Mode().Perm())
		}
		if strings.HasSuffix(path, ".key") {
			keys++
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key %s has mode %04o, want 0600", path, fi.Mode().Perm())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keys != 1 {
		t.Errorf("found %d leaf keys under %s, want 1", keys, certs)
	}
}

func TestLeavesCustomStorage(t *testing.T) {
	ca := newTestCA(t)
	mem := newMemStorage()
	l := newTestLeaves(t, LeavesConfig{CA: ca, Storage: mem})
	srv := startTLSServer(t, l.TLSConfig())
	if _, err := srv.dial(testContext(t), clientConfig(ca, "store.proxy.golang.org")); err != nil {
		t.Fatal(err)
	}
	if got := mem.keys("store.proxy.golang.org"); len(got) != 3 {
		t.Errorf("storage keys for the leaf = %q, want certificate, key and metadata", got)
	}
}

func TestLeavesAllowIsCheckedEveryHandshake(t *testing.T) {
	ca := newTestCA(t)
	var allowed atomic.Bool
	allowed.Store(true)
	l := newTestLeaves(t, LeavesConfig{CA: ca, Allow: func(string) bool { return allowed.Load() }})
	srv := startTLSServer(t, l.TLSConfig())
	cfg := clientConfig(ca, "allow.proxy.golang.org")
	if _, err := srv.dial(testContext(t), cfg); err != nil {
		t.Fatal(err)
	}
	<-srv.errs
	allowed.Store(false)
	if _, err := srv.dial(testContext(t), cfg); err == nil {
		t.Fatal("handshake succeeded with a cached leaf for a name no longer allowed")
	}
	if err := <-srv.errs; !errors.Is(err, ErrNotAllowed) {
		t.Errorf("server error = %v, want ErrNotAllowed", err)
	}
}

func TestLeavesRenewal(t *testing.T) {
	// A one-minute leaf is due for renewal as soon as it is served; certmagic
	// then renews it in the background and keeps serving the old one.
	ca := newTestCA(t)
	l := newTestLeaves(t, LeavesConfig{CA: ca, Storage: newMemStorage(), Lifetime: time.Minute})
	srv := startTLSServer(t, l.TLSConfig())
	// A name of its own per run: the renewal still running when the test
	// ends must not hold up a later run (certmagic's waits are per name).
	cfg := clientConfig(ca, "renew-"+ca.Fingerprint()[:8]+".proxy.golang.org")
	first, err := srv.dial(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		leaf, err := srv.dial(testContext(t), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if l.Issued() < 2 {
				t.Errorf("renewed leaf served, but Issued() = %d", l.Issued())
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("leaf not renewed; Issued() = %d", l.Issued())
}

func TestNewLeavesErrors(t *testing.T) {
	ca := newTestCA(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  LeavesConfig
		want error // nil: any error
	}{
		{"no CA", context.Background(), LeavesConfig{Dir: t.TempDir()}, ErrNoCA},
		{"no storage", context.Background(), LeavesConfig{CA: ca}, nil},
		{"default name not permitted", context.Background(), LeavesConfig{CA: ca, Dir: t.TempDir(), DefaultName: "evil.example"}, ErrNotPermitted},
		{"default name not allowed", context.Background(), LeavesConfig{
			CA: ca, Dir: t.TempDir(), DefaultName: "proxy.golang.org", Allow: func(string) bool { return false },
		}, ErrNotAllowed},
		{"canceled", canceled, LeavesConfig{CA: ca, Dir: t.TempDir()}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLeaves(tc.ctx, tc.cfg)
			if err == nil {
				l.Stop()
				t.Fatal("NewLeaves succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("NewLeaves = %v, want %v", err, tc.want)
			}
		})
	}
}

func BenchmarkHandshake(b *testing.B) {
	ca := newTestCA(b)
	l := newTestLeaves(b, LeavesConfig{CA: ca})
	srv := startTLSServer(b, l.TLSConfig())
	cfg := clientConfig(ca, "proxy.golang.org")
	ctx := testContext(b)
	if _, err := srv.dial(ctx, cfg); err != nil { // mint and cache the leaf
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.dial(ctx, cfg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := l.Issued(); got != 1 {
		b.Errorf("Issued() = %d, want 1", got)
	}
}
