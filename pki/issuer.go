package pki

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
)

// DefaultLeafLifetime is the validity of a leaf certificate when
// Issuer.Lifetime is zero.
const DefaultLeafLifetime = 7 * 24 * time.Hour

// ErrNoCA reports an Issuer or Leaves without a CA.
var ErrNoCA = errors.New("pki: no CA configured")

var _ certmagic.Issuer = (*Issuer)(nil)

// Issuer is a certmagic.Issuer that signs leaf certificates with the CA.
// It signs only DNS names the CA permits; it never signs IP addresses,
// e-mail addresses, URIs or wildcards. It is safe for concurrent use and
// must not be copied after first use.
type Issuer struct {
	// CA signs the leaves. Required.
	CA *CA
	// Lifetime is how long a leaf is valid from now; 0 means
	// DefaultLeafLifetime (7 days). A leaf never outlives the CA.
	Lifetime time.Duration

	issued atomic.Int64
}

// leafMetadata is stored by certmagic next to each leaf (as JSON).
type leafMetadata struct {
	Issuer        string `json:"issuer"`
	CAFingerprint string `json:"ca_sha256"`
}

// Issue signs a leaf certificate for the DNS names of csr. It refuses,
// with an error wrapping ErrNotPermitted, any name the CA does not permit
// and any IP, e-mail or URI SAN. The leaf is for TLS server authentication
// (ExtKeyUsage ServerAuth, KeyUsage DigitalSignature), carries the CSR's
// DNS names, and is valid from an hour ago for Lifetime. Refusals are
// marked certmagic.ErrNoRetry, so certmagic does not retry them.
func (i *Issuer) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if i.CA == nil {
		return nil, certmagic.ErrNoRetry{Err: ErrNoCA}
	}
	names, err := i.checkRequest(csr)
	if err != nil {
		return nil, certmagic.ErrNoRetry{Err: err}
	}
	der, err := i.sign(csr, names)
	if err != nil {
		return nil, err
	}
	i.issued.Add(1)
	return &certmagic.IssuedCertificate{
		Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Metadata:    leafMetadata{Issuer: "modgate", CAFingerprint: i.CA.Fingerprint()},
	}, nil
}

// checkRequest validates csr and returns its DNS names, lower-cased.
func (i *Issuer) checkRequest(csr *x509.CertificateRequest) ([]string, error) {
	if csr == nil {
		return nil, errors.New("pki: nil certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: certificate request signature: %w", err)
	}
	switch {
	case len(csr.IPAddresses) > 0:
		return nil, fmt.Errorf("%w: IP address %s", ErrNotPermitted, csr.IPAddresses[0])
	case len(csr.EmailAddresses) > 0:
		return nil, fmt.Errorf("%w: e-mail address %q", ErrNotPermitted, csr.EmailAddresses[0])
	case len(csr.URIs) > 0:
		return nil, fmt.Errorf("%w: URI %q", ErrNotPermitted, csr.URIs[0])
	case len(csr.DNSNames) == 0:
		return nil, fmt.Errorf("pki: certificate request has no DNS names")
	}
	names := make([]string, len(csr.DNSNames))
	for n, name := range csr.DNSNames {
		name = strings.ToLower(name)
		if !i.CA.Permits(name) {
			return nil, fmt.Errorf("%w: %q (permitted: %q)", ErrNotPermitted, name, i.CA.Names())
		}
		names[n] = name
	}
	return names, nil
}

// sign makes and signs the leaf certificate.
func (i *Issuer) sign(csr *x509.CertificateRequest, names []string) ([]byte, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	lifetime := i.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultLeafLifetime
	}
	now := time.Now()
	if !now.Before(i.CA.Cert.NotAfter) {
		return nil, certmagic.ErrNoRetry{Err: fmt.Errorf("%w: CA expired at %v", ErrInvalidCA, i.CA.Cert.NotAfter)}
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(i.CA.Cert.NotAfter) {
		notAfter = i.CA.Cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment // TLS 1.2 RSA key exchange
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.CA.Cert, csr.PublicKey, i.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing leaf for %q: %w", names, err)
	}
	return der, nil
}

// IssuerKey identifies the CA in certmagic's storage paths:
// "modgate-" and the first 16 hex digits of the CA's SHA-256 fingerprint.
// Leaves of another CA (say, before the CA was replaced) are therefore
// never loaded and served.
func (i *Issuer) IssuerKey() string {
	if i.CA == nil {
		return "modgate"
	}
	return "modgate-" + i.CA.Fingerprint()[:16]
}

// Issued returns how many leaf certificates this Issuer has signed.
func (i *Issuer) Issued() int64 {
	return i.issued.Load()
}
