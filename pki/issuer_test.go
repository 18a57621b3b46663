package pki

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func TestIssuerIssue(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name    string
		csr     x509.CertificateRequest
		want    []string // the leaf's DNS names; nil: refused
		wantErr error
	}{
		{"permitted", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}}, []string{"proxy.golang.org"}, nil},
		{"two names", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org", "sum.golang.org"}}, []string{"proxy.golang.org", "sum.golang.org"}, nil},
		{"subdomain", x509.CertificateRequest{DNSNames: []string{"a.sum.golang.org"}}, []string{"a.sum.golang.org"}, nil},
		{"upper case", x509.CertificateRequest{DNSNames: []string{"PROXY.golang.org"}}, []string{"proxy.golang.org"}, nil},
		{"other site", x509.CertificateRequest{DNSNames: []string{"evil.example"}}, nil, ErrNotPermitted},
		{"one bad name", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org", "evil.example"}}, nil, ErrNotPermitted},
		{"wildcard", x509.CertificateRequest{DNSNames: []string{"*.proxy.golang.org"}}, nil, ErrNotPermitted},
		{"IP", x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, nil, ErrNotPermitted},
		{"IP next to a name", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}, IPAddresses: []net.IP{net.ParseIP("::1")}}, nil, ErrNotPermitted},
		{"e-mail", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}, EmailAddresses: []string{"a@proxy.golang.org"}}, nil, ErrNotPermitted},
		{"URI", x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}, URIs: []*url.URL{{Scheme: "https", Host: "proxy.golang.org"}}}, nil, ErrNotPermitted},
		{"common name only", x509.CertificateRequest{Subject: pkix.Name{CommonName: "proxy.golang.org"}}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := &Issuer{CA: ca}
			got, err := iss.Issue(context.Background(), newCSR(t, &tc.csr))
			if tc.want == nil {
				if err == nil {
					t.Fatal("Issue succeeded, want a refusal")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("Issue = %v, want %v", err, tc.wantErr)
				}
				if !errors.As(err, new(certmagic.ErrNoRetry)) {
					t.Errorf("Issue = %v, want certmagic.ErrNoRetry", err)
				}
				if iss.Issued() != 0 {
					t.Errorf("Issued() = %d after a refusal", iss.Issued())
				}
				return
			}
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			leaf := parseIssued(t, got)
			checkLeaf(t, ca, leaf, tc.want, DefaultLeafLifetime)
			if iss.Issued() != 1 {
				t.Errorf("Issued() = %d, want 1", iss.Issued())
			}
		})
	}
}

// checkLeaf checks what every leaf must be.
func checkLeaf(t *testing.T, ca *CA, leaf *x509.Certificate, names []string, lifetime time.Duration) {
	t.Helper()
	if !slices.Equal(leaf.DNSNames, names) {
		t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, names)
	}
	if len(leaf.IPAddresses)+len(leaf.EmailAddresses)+len(leaf.URIs) != 0 {
		t.Error("leaf has non-DNS SANs")
	}
	if leaf.IsCA || leaf.KeyUsage != x509.KeyUsageDigitalSignature ||
		!slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("leaf usage: IsCA=%v KeyUsage=%v ExtKeyUsage=%v", leaf.IsCA, leaf.KeyUsage, leaf.ExtKeyUsage)
	}
	if d := time.Until(leaf.NotBefore) + clockSkew; d > time.Minute || d < -time.Minute {
		t.Errorf("NotBefore = %v, want about an hour ago", leaf.NotBefore)
	}
	if d := time.Until(leaf.NotAfter) - lifetime; d > time.Minute || d < -time.Minute {
		t.Errorf("NotAfter = %v, want about %v from now", leaf.NotAfter, lifetime)
	}
	if len(leaf.OCSPServer)+len(leaf.IssuingCertificateURL)+len(leaf.CRLDistributionPoints) != 0 {
		t.Error("leaf points to network services (OCSP, AIA or CRL)")
	}
	for _, n := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.pool(), DNSName: n}); err != nil {
			t.Errorf("Verify(%q): %v", n, err)
		}
	}
}

func parseIssued(t *testing.T, ic *certmagic.IssuedCertificate) *x509.Certificate {
	t.Helper()
	block, rest := pem.Decode(ic.Certificate)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("issued certificate is not PEM: %.40q", ic.Certificate)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		t.Errorf("issued chain has more than the leaf")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestIssuerLifetime(t *testing.T) {
	tests := []struct {
		name     string
		ca       *CA
		lifetime time.Duration
		want     time.Duration
	}{
		{"default", newTestCA(t), 0, DefaultLeafLifetime},
		{"one day", newTestCA(t), 24 * time.Hour, 24 * time.Hour},
		{"capped by the CA", caWithValidity(t, time.Now().Add(48*time.Hour)), 30 * 24 * time.Hour, 48 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			iss := &Issuer{CA: tc.ca, Lifetime: tc.lifetime}
			csr := newCSR(t, &x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}})
			got, err := iss.Issue(context.Background(), csr)
			if err != nil {
				t.Fatal(err)
			}
			checkLeaf(t, tc.ca, parseIssued(t, got), []string{"proxy.golang.org"}, tc.want)
		})
	}
}

func TestIssuerErrors(t *testing.T) {
	ca := newTestCA(t)
	good := newCSR(t, &x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		iss  *Issuer
		ctx  context.Context
		csr  *x509.CertificateRequest
		want error
	}{
		{"no CA", &Issuer{}, context.Background(), good, ErrNoCA},
		{"nil CSR", &Issuer{CA: ca}, context.Background(), nil, nil},
		{"canceled", &Issuer{CA: ca}, canceled, good, context.Canceled},
		{"expired CA", &Issuer{CA: caWithValidity(t, time.Now().Add(-time.Minute))}, context.Background(), good, ErrInvalidCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.iss.Issue(tc.ctx, tc.csr)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Issue = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("bad signature", func(t *testing.T) {
		csr := newCSR(t, &x509.CertificateRequest{DNSNames: []string{"proxy.golang.org"}})
		csr.Signature = slices.Clone(csr.Signature)
		csr.Signature[len(csr.Signature)-1] ^= 1
		if _, err := (&Issuer{CA: ca}).Issue(context.Background(), csr); err == nil {
			t.Fatal("Issue accepted a CSR with a bad signature")
		}
	})
}

func TestIssuerKey(t *testing.T) {
	a, b := newTestCA(t), newTestCA(t)
	ka, kb := (&Issuer{CA: a}).IssuerKey(), (&Issuer{CA: b}).IssuerKey()
	if ka == kb {
		t.Errorf("two CAs share IssuerKey %q", ka)
	}
	if again := (&Issuer{CA: a}).IssuerKey(); again != ka {
		t.Errorf("IssuerKey not stable: %q then %q", ka, again)
	}
	if !strings.HasPrefix(ka, "modgate-") || certmagic.StorageKeys.Safe(ka) != ka {
		t.Errorf("IssuerKey %q is not a clean storage key", ka)
	}
}
