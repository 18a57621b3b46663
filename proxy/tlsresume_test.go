package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// selfSigned returns a server certificate for proxy.golang.org and a pool
// trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy.golang.org"},
		DNSNames: []string{"proxy.golang.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// handshake runs one TLS handshake between a clone of server (as
// intercept makes per connection) and a client, and reports whether the
// client resumed a session.
func handshake(t *testing.T, server, client *tls.Config) bool {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, server.Clone())
	go func() {
		if srv.Handshake() == nil {
			srv.Write([]byte("x")) // sends the TLS 1.3 session ticket with it
		}
	}()
	cl := tls.Client(b, client)
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cl, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return cl.ConnectionState().DidResume
}

func TestSessionResumptionAcrossClones(t *testing.T) {
	cert, pool := selfSigned(t)
	base := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	tests := []struct {
		name   string
		server func() *tls.Config
		want   bool
	}{
		{"shared ticket keys resume", func() *tls.Config { var k ticketKeys; return k.shareTickets(base) }, true},
		{"automatic keys per clone do not", func() *tls.Config { return base.Clone() }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := tt.server()
			client := &tls.Config{RootCAs: pool, ServerName: "proxy.golang.org", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			if handshake(t, server, client) {
				t.Fatal("first handshake resumed")
			}
			if got := handshake(t, server, client); got != tt.want {
				t.Errorf("second handshake resumed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTicketKeysRotate(t *testing.T) {
	var k ticketKeys
	cfg := k.shareTickets(&tls.Config{})
	first := k.keys[0]
	k.maybeRotate(cfg)
	if k.keys[0] != first || len(k.keys) != 1 {
		t.Fatal("rotated before ticketRotation")
	}
	k.created = time.Now().Add(-ticketRotation)
	k.maybeRotate(cfg)
	if len(k.keys) != 2 || k.keys[1] != first || k.keys[0] == first {
		t.Errorf("after rotation: %d keys, previous kept %v", len(k.keys), k.keys[len(k.keys)-1] == first)
	}
}
