package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// AdminName is the DNS name of the admin listener's TLS certificate. A CA
// must permit it (new data directories' CAs do) for --admin-tls.
const AdminName = "modgate.admin"

// DefaultClientLifetime is the validity of a client certificate when
// IssueClient is given 0.
const DefaultClientLifetime = 365 * 24 * time.Hour

// adminLeafLifetime is the validity of the admin listener's certificate;
// it is renewed in memory when a third of it remains.
const adminLeafLifetime = 7 * 24 * time.Hour

// IssueClient makes a key and a certificate for TLS client authentication
// (ExtKeyUsage ClientAuth only) with subject CN name and no SANs, signed by
// the CA, valid from an hour ago for lifetime (0 means
// DefaultClientLifetime, never beyond the CA). The name is 1 to 64 bytes of
// letters, digits, '.', '_', '-' and '@'. It returns both as PEM.
func (ca *CA) IssueClient(name string, lifetime time.Duration) (certPEM, keyPEM []byte, err error) {
	if !validClientName(name) {
		return nil, nil, fmt.Errorf(
			"%w: client name %q: use 1 to 64 letters, digits, '.', '_', '-' or '@'",
			ErrInvalidName,
			name,
		)
	}
	if lifetime <= 0 {
		lifetime = DefaultClientLifetime
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{"modgate admin"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, lifetime)
}

// issue signs tmpl (filling serial, validity and basic constraints) for a
// new P-256 key and returns the certificate and key as PEM.
func (ca *CA) issue(tmpl *x509.Certificate, lifetime time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generating key: %w", err)
	}
	if tmpl.SerialNumber, err = randomSerial(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	if !now.Before(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("%w: CA expired at %v", ErrInvalidCA, ca.Cert.NotAfter)
	}
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-clockSkew), now.Add(lifetime)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: signing certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encoding key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func validClientName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return false
	}
	return strings.IndexFunc(name, func(r rune) bool {
		return !(r == '.' || r == '_' || r == '-' || r == '@' ||
			'0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) < 0
}

// WriteClient issues a client certificate for name (see IssueClient) and
// writes it to dir as NAME.pem (0644) and NAME-key.pem (0600), creating
// dir (0700) if needed. It never overwrites: if either file exists it
// returns an error wrapping ErrExists and writes nothing.
func (ca *CA) WriteClient(dir, name string, lifetime time.Duration) (certPath, keyPath string, err error) {
	certPEM, keyPEM, err := ca.IssueClient(name, lifetime)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("pki: creating %s: %w", dir, err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	if err := writeExclusive(keyPath, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeExclusive(certPath, certPEM, 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return certPath, keyPath, nil
}

// AdminTLSConfig returns the TLS configuration of the admin listener: a
// server certificate for AdminName from the CA (made in memory, renewed
// when a third of its week remains), and client certificates requested
// but not required, verified against the CA when given. It fails with
// ErrNotPermitted if the CA's name constraints do not permit AdminName
// (CAs made before modgate added it).
func (ca *CA) AdminTLSConfig() (*tls.Config, error) {
	if !ca.Permits(AdminName) {
		return nil, fmt.Errorf(
			"%w: the CA permits only %q, not %s; it was made before modgate added %s to new CAs: "+
				"move ca.pem and ca-key.pem away, run modgate init, and redistribute the new CA",
			ErrNotPermitted,
			ca.Names(),
			AdminName,
			AdminName,
		)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	s := &adminCert{ca: ca}
	if _, err := s.get(nil); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.get,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	}, nil
}

// adminCert holds the admin listener's certificate and renews it.
type adminCert struct {
	ca   *CA
	mu   sync.Mutex
	cert *tls.Certificate
}

func (s *adminCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert != nil && time.Until(s.cert.Leaf.NotAfter) > adminLeafLifetime/3 {
		return s.cert, nil
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: AdminName},
		DNSNames:    []string{AdminName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certPEM, keyPEM, err := s.ca.issue(tmpl, adminLeafLifetime)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: admin certificate: %w", err)
	}
	s.cert = &c
	return s.cert, nil
}
