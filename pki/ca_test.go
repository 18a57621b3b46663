package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	c := ca.Cert
	checks := []struct {
		name string
		ok   bool
	}{
		{"IsCA", c.IsCA && c.BasicConstraintsValid},
		{"MaxPathLen 0", c.MaxPathLen == 0 && c.MaxPathLenZero},
		{"KeyUsage CertSign|CRLSign", c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"P-256", ca.Key.Curve == elliptic.P256()},
		{"self-signed", c.CheckSignatureFrom(c) == nil},
		{"permitted names", slices.Equal(c.PermittedDNSDomains, testNames)},
		{"constraints critical", c.PermittedDNSDomainsCritical},
		{"all IPs excluded", excludesAllIPs(c.ExcludedIPRanges)},
		{"10 years", c.NotAfter.Sub(time.Now()) > CAValidity-time.Minute},
		{"back-dated", time.Since(c.NotBefore) >= clockSkew-time.Minute},
		{"common name", strings.HasPrefix(c.Subject.CommonName, "modgate interception CA")},
		{"serial", c.SerialNumber.Sign() > 0 && c.SerialNumber.BitLen() > 64},
		{"PEM", strings.HasPrefix(string(ca.CertPEM), "-----BEGIN CERTIFICATE-----")},
		{"fingerprint", len(ca.Fingerprint()) == 64},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Errorf("CA certificate fails %s", tc.name)
			}
		})
	}
	if other := newTestCA(t); other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs share a serial number")
	}
}

func TestNewCANames(t *testing.T) {
	tests := []struct {
		name  string
		names []string
		want  []string // nil: an error wrapping ErrInvalidName
	}{
		{"one", []string{"proxy.golang.org"}, []string{"proxy.golang.org"}},
		{"duplicates dropped", []string{"a.example", "b.example", "a.example"}, []string{"a.example", "b.example"}},
		{"single label", []string{"localhost"}, []string{"localhost"}},
		{"none", nil, nil},
		{"empty", []string{""}, nil},
		{"upper case", []string{"Proxy.golang.org"}, nil},
		{"wildcard", []string{"*.golang.org"}, nil},
		{"IPv4", []string{"10.0.0.1"}, nil},
		{"IPv6", []string{"::1"}, nil},
		{"trailing dot", []string{"proxy.golang.org."}, nil},
		{"leading dot", []string{".golang.org"}, nil},
		{"empty label", []string{"proxy..org"}, nil},
		{"hyphen first", []string{"-proxy.golang.org"}, nil},
		{"underscore", []string{"a_b.example"}, nil},
		{"space", []string{"a b.example"}, nil},
		{"long label", []string{strings.Repeat("a", 64) + ".example"}, nil},
		{"one bad of two", []string{"proxy.golang.org", "evil example"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := NewCA(tc.names)
			if tc.want == nil {
				if !errors.Is(err, ErrInvalidName) {
					t.Fatalf("NewCA(%q) = %v, want ErrInvalidName", tc.names, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewCA(%q): %v", tc.names, err)
			}
			if got := ca.Names(); !slices.Equal(got, tc.want) {
				t.Errorf("Names() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPermits(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name string
		want bool
	}{
		{"proxy.golang.org", true},
		{"sum.golang.org", true},
		{"PROXY.golang.org", true},
		{"a.b.proxy.golang.org", true},
		{"golang.org", false},
		{"evil.example", false},
		{"evilproxy.golang.org", false},
		{"proxy.golang.org.evil.example", false},
		{"*.proxy.golang.org", false},
		{"192.0.2.1", false},
		{"::1", false},
		{"", false},
		{"proxy.golang.org.", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ca.Permits(tc.name); got != tc.want {
				t.Errorf("Permits(%q) = %v, want %v", tc.name, got, tc.want)
			}
		})
	}
}

// TestNameConstraintsEnforced checks that crypto/x509 itself (not modgate)
// rejects leaves for other names or IPs, even when they are signed with the
// CA key directly, bypassing the Issuer.
func TestNameConstraintsEnforced(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name    string
		dns     []string
		ips     []net.IP
		verify  string // VerifyOptions.DNSName
		wantErr bool   // want CANotAuthorizedForThisName
	}{
		{"permitted", []string{"proxy.golang.org"}, nil, "proxy.golang.org", false},
		{"subdomain", []string{"x.sum.golang.org"}, nil, "x.sum.golang.org", false},
		{"other site", []string{"evil.example"}, nil, "evil.example", true},
		{"suffix without dot", []string{"evilproxy.golang.org"}, nil, "evilproxy.golang.org", true},
		{"parent", []string{"golang.org"}, nil, "golang.org", true},
		{"permitted name as prefix", []string{"proxy.golang.org.evil.example"}, nil, "proxy.golang.org.evil.example", true},
		{"extra SAN", []string{"proxy.golang.org", "evil.example"}, nil, "proxy.golang.org", true},
		{"IPv4", nil, []net.IP{net.ParseIP("203.0.113.7")}, "203.0.113.7", true},
		{"IPv6", nil, []net.IP{net.ParseIP("2001:db8::1")}, "2001:db8::1", true},
		{"loopback next to permitted name", []string{"proxy.golang.org"}, []net.IP{net.IPv4(127, 0, 0, 1)}, "proxy.golang.org", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := signDirect(t, ca, &x509.Certificate{DNSNames: tc.dns, IPAddresses: tc.ips})
			_, err := leaf.Verify(x509.VerifyOptions{Roots: ca.pool(), DNSName: tc.verify})
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			var inv x509.CertificateInvalidError
			if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
				t.Fatalf("Verify = %v, want a CANotAuthorizedForThisName error", err)
			}
		})
	}
}

// TestOtherNameTypesExcluded checks that a leaf signed with the CA key does
// not verify when it names an e-mail address or a URI, alone or next to a
// permitted DNS name: the CA vouches for its DNS names only.
func TestOtherNameTypesExcluded(t *testing.T) {
	ca := newTestCA(t)
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name string
		tmpl x509.Certificate
	}{
		{"e-mail", x509.Certificate{EmailAddresses: []string{"ceo@example.com"}}},
		{"e-mail at a permitted host", x509.Certificate{EmailAddresses: []string{"x@proxy.golang.org"}}},
		{"e-mail at the placeholder host", x509.Certificate{EmailAddresses: []string{"x@invalid"}}},
		{"URI of the placeholder host", x509.Certificate{URIs: []*url.URL{mustURL("https://invalid/")}}},
		{"URI", x509.Certificate{URIs: []*url.URL{mustURL("spiffe://example.com/admin")}}},
		{"URI of a permitted host", x509.Certificate{URIs: []*url.URL{mustURL("https://proxy.golang.org/x")}}},
		{"DNS and e-mail", x509.Certificate{DNSNames: []string{"proxy.golang.org"}, EmailAddresses: []string{"a@b.example"}}},
		{"DNS and URI", x509.Certificate{DNSNames: []string{"proxy.golang.org"}, URIs: []*url.URL{mustURL("urn:x:y")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := signDirect(t, ca, &tc.tmpl)
			_, err := leaf.Verify(x509.VerifyOptions{Roots: ca.pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			var inv x509.CertificateInvalidError
			if !errors.As(err, &inv) || inv.Reason != x509.CANotAuthorizedForThisName {
				t.Fatalf("Verify = %v, want a CANotAuthorizedForThisName error", err)
			}
		})
	}
}

func TestCheckCA(t *testing.T) {
	ca := newTestCA(t)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	unconstrained := *ca.Cert
	unconstrained.PermittedDNSDomains = nil
	ipsAllowed := *ca.Cert
	ipsAllowed.ExcludedIPRanges = ipsAllowed.ExcludedIPRanges[:1]
	notCA := *ca.Cert
	notCA.IsCA = false
	emailsAllowed := *ca.Cert
	emailsAllowed.PermittedEmailAddresses = nil
	urisAllowed := *ca.Cert
	urisAllowed.ExcludedURIDomains = nil
	tests := []struct {
		name string
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
		ok   bool
	}{
		{"good", ca.Cert, ca.Key, true},
		{"other key", ca.Cert, otherKey, false},
		{"no key", ca.Cert, nil, false},
		{"unconstrained", &unconstrained, ca.Key, false},
		{"IPv6 not excluded", &ipsAllowed, ca.Key, false},
		{"not a CA", &notCA, ca.Key, false},
		{"e-mail addresses not excluded (older CA)", &emailsAllowed, ca.Key, false},
		{"URIs not excluded (older CA)", &urisAllowed, ca.Key, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCA(tc.cert, tc.key)
			if tc.ok != (err == nil) {
				t.Fatalf("checkCA = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidCA) {
				t.Errorf("checkCA = %v, want ErrInvalidCA", err)
			}
		})
	}
}
