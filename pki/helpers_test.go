package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io/fs"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// testNames are the names the test CAs permit.
var testNames = []string{"proxy.golang.org", "sum.golang.org"}

// newTestCA makes a CA for names (testNames if none are given).
func newTestCA(tb testing.TB, names ...string) *CA {
	tb.Helper()
	if len(names) == 0 {
		names = testNames
	}
	ca, err := NewCA(names)
	if err != nil {
		tb.Fatalf("NewCA(%q): %v", names, err)
	}
	return ca
}

// pool returns a pool holding only the CA.
func (ca *CA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// signDirect signs a server leaf from tmpl with the CA key, bypassing the
// Issuer: what a thief holding the CA key could do.
func signDirect(tb testing.TB, ca *CA, tmpl *x509.Certificate) *x509.Certificate {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return leaf
}

// newCSR makes a P-256 certificate request from tmpl.
func newCSR(tb testing.TB, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		tb.Fatal(err)
	}
	return csr
}

// caWithValidity makes a constrained CA certificate valid until notAfter.
func caWithValidity(tb testing.TB, notAfter time.Time) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	base := newTestCA(tb)
	tmpl := *base.Cert
	tmpl.Subject = pkix.Name{CommonName: "short-lived test CA"}
	tmpl.NotAfter = notAfter
	tmpl.SubjectKeyId = nil
	tmpl.PublicKey = key.Public()
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := newCA(der, key)
	if err != nil {
		tb.Fatal(err)
	}
	return ca
}

// tlsServer accepts TLS connections on loopback and reports the result of
// each server handshake on errs.
type tlsServer struct {
	addr string
	errs chan error
}

// startTLSServer serves cfg on a loopback listener until the test ends.
func startTLSServer(tb testing.TB, cfg *tls.Config) *tlsServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return serveTLS(tb, ln, cfg)
}

// serveTLS serves cfg on ln until the test ends.
func serveTLS(tb testing.TB, ln net.Listener, cfg *tls.Config) *tlsServer {
	tb.Helper()
	s := &tlsServer{addr: ln.Addr().String(), errs: make(chan error, 1024)}
	var wg sync.WaitGroup
	tb.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.serve(conn, cfg) })
		}
	})
	return s
}

// serve runs one server handshake on conn.
func (s *tlsServer) serve(conn net.Conn, cfg *tls.Config) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	err := tls.Server(conn, cfg).Handshake()
	select {
	case s.errs <- err:
	default:
	}
}

// dial runs a client handshake against s and returns the server's leaf.
func (s *tlsServer) dial(ctx context.Context, cfg *tls.Config) (*x509.Certificate, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc.ConnectionState().PeerCertificates[0], nil
}

// clientConfig trusts only ca and expects serverName.
func clientConfig(ca *CA, serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.pool(), ServerName: serverName}
}

// memStorage is an in-memory certmagic.Storage for tests.
type memStorage struct {
	mu    sync.Mutex
	data  map[string][]byte
	locks map[string]chan struct{}
}

var _ certmagic.Storage = (*memStorage)(nil)

func newMemStorage() *memStorage {
	return &memStorage{data: map[string][]byte{}, locks: map[string]chan struct{}{}}
}

func (m *memStorage) Lock(ctx context.Context, name string) error {
	for {
		m.mu.Lock()
		held, ok := m.locks[name]
		if !ok {
			m.locks[name] = make(chan struct{})
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (m *memStorage) Unlock(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if held, ok := m.locks[name]; ok {
		close(held)
		delete(m.locks, name)
	}
	return nil
}

func (m *memStorage) Store(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[key] = append([]byte(nil), value...)
	return nil
}

func (m *memStorage) Load(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), v...), nil
}

func (m *memStorage) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.data {
		if k == key || strings.HasPrefix(k, key+"/") {
			delete(m.data, k)
		}
	}
	return nil
}

func (m *memStorage) Exists(_ context.Context, key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.data[key]
	return ok
}

func (m *memStorage) List(_ context.Context, prefix string, _ bool) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.data {
		if strings.HasPrefix(k, prefix+"/") {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (m *memStorage) Stat(_ context.Context, key string) (certmagic.KeyInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[key]
	if !ok {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, Size: int64(len(v)), IsTerminal: true}, nil
}

// keys returns the stored keys that contain substr.
func (m *memStorage) keys(substr string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for k := range m.data {
		if strings.Contains(k, substr) {
			out = append(out, k)
		}
	}
	return out
}
