package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/dnsname"
	"github.com/modgate/modgate/internal/secretfile"
)

// ErrInsecureKey reports a CA key file that group or others may read. The
// error message names the file and the chmod that fixes it. It is
// secretfile.ErrInsecureKey, the one sentinel of every secret file.
var ErrInsecureKey = secretfile.ErrInsecureKey

// ErrExists reports that Save (or LoadOrCreate) refused to overwrite an
// existing CA file.
var ErrExists = errors.New("pki: CA file already exists")

// ErrNotPermitted reports a name outside the CA's name constraints, or a
// certificate request for something the CA never signs (IP addresses,
// e-mail addresses, URIs, wildcards).
var ErrNotPermitted = errors.New("pki: name not permitted by the CA's name constraints")

// ErrInvalidName reports a name that is not a lower-case DNS host name
// without wildcards, such as an IP address or "*.example.com".
var ErrInvalidName = errors.New("pki: invalid DNS name")

// ErrInvalidCA reports a CA certificate or key that modgate will not use:
// unparsable, not a CA, without the name constraints modgate relies on, or a
// key that does not match the certificate.
var ErrInvalidCA = errors.New("pki: invalid CA")

// CAValidity is how long a new CA certificate is valid.
const CAValidity = 10 * 365 * 24 * time.Hour

// clockSkew back-dates NotBefore of every certificate, so that clients whose
// clocks run a little behind still accept it.
const clockSkew = time.Hour

// CA is modgate's interception CA: an ECDSA P-256 self-signed root with
// MaxPathLen 0, KeyUsage CertSign|CRLSign, valid for ten years, and
// critical name constraints that permit only the given DNS names (and
// their subdomains) and exclude all IPv4 and IPv6 addresses, so that it
// can never vouch for any other site or any IP.
//
// Its fields are read-only once the CA is made or loaded.
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// Key is the CA private key; it matches Cert.
	Key *ecdsa.PrivateKey
	// CertPEM is Cert in PEM form, as written to ca.pem.
	CertPEM []byte
}

// NewCA makes a new CA whose name constraints permit exactly names. Every
// name must be a lower-case DNS host name: no wildcards, no IP addresses,
// no trailing dot. Duplicates are dropped; at least one name is required.
func NewCA(names []string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generating CA key: %w", err)
	}
	return caForKey(names, key)
}

// caForKey makes the self-signed CA certificate of NewCA for key.
func caForKey(names []string, key *ecdsa.PrivateKey) (*CA, error) {
	names, err := validateNames(names)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName(), Organization: []string{"modgate"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// Limit what the CA's leaves may be used for: TLS servers (the
		// interception) and TLS clients (admin API client certificates).
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         names,
		// The CA vouches for the permitted DNS names and nothing else. Every
		// IP address is excluded. For e-mail addresses and URIs, see
		// nothingName.
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
		PermittedEmailAddresses: []string{nothingName},
		ExcludedEmailAddresses:  []string{nothingName},
		PermittedURIDomains:     []string{nothingName},
		ExcludedURIDomains:      []string{nothingName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing CA certificate: %w", err)
	}
	return newCA(der, key)
}

// nothingName is the one host that e-mail addresses and URIs of the CA's
// leaves may name, and the one they may not: together, no name of either
// type verifies. Once a name type has a permitted subtree, every name of
// that type must lie inside it (RFC 5280, 4.2.1.10); "invalid" is a
// reserved name (RFC 6761) that no real mailbox or host has, and excluding
// it as well leaves nothing. An empty excluded constraint would be shorter,
// but OpenSSL reads it as matching nothing rather than everything.
const nothingName = "invalid"

// newCA parses der, checks it against key and the rules modgate relies on,
// and returns the CA.
func newCA(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing certificate: %w", ErrInvalidCA, err)
	}
	if err := checkCA(cert, key); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &CA{Cert: cert, Key: key, CertPEM: certPEM}, nil
}

// checkCA reports whether cert is a CA certificate modgate may use with key:
// a CA with critical DNS name constraints that exclude every IP address,
// e-mail address and URI. A CA made by an older modgate lacks the last two:
// it is refused with the way out.
func checkCA(cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	switch {
	case !cert.IsCA || !cert.BasicConstraintsValid:
		return fmt.Errorf("%w: certificate is not a CA", ErrInvalidCA)
	case len(cert.PermittedDNSDomains) == 0 || !cert.PermittedDNSDomainsCritical:
		return fmt.Errorf("%w: certificate has no critical DNS name constraints", ErrInvalidCA)
	case !excludesAllIPs(cert.ExcludedIPRanges):
		return fmt.Errorf("%w: certificate does not exclude all IP addresses", ErrInvalidCA)
	case !excludesEveryName(cert.PermittedEmailAddresses, cert.ExcludedEmailAddresses) ||
		!excludesEveryName(cert.PermittedURIDomains, cert.ExcludedURIDomains):
		return fmt.Errorf("%w: certificate does not exclude all e-mail addresses and URIs "+
			"(a CA made before modgate constrained every name type: move ca.pem and ca-key.pem "+
			"away, start modgate to make a new CA, and hand the new ca.pem to clients)", ErrInvalidCA)
	case key == nil || !key.PublicKey.Equal(cert.PublicKey):
		return fmt.Errorf("%w: private key does not match the certificate", ErrInvalidCA)
	}
	return nil
}

// excludesAllIPs reports whether ranges contain both 0.0.0.0/0 and ::/0.
func excludesAllIPs(ranges []*net.IPNet) bool {
	var v4, v6 bool
	for _, r := range ranges {
		ones, bits := r.Mask.Size()
		if ones != 0 {
			continue
		}
		v4 = v4 || bits == 32
		v6 = v6 || bits == 128
	}
	return v4 && v6
}

// excludesEveryName reports whether a name type's constraints let no name
// through: its only permitted subtree is nothingName, which is excluded.
func excludesEveryName(permitted, excluded []string) bool {
	return slices.Equal(permitted, []string{nothingName}) && slices.Contains(excluded, nothingName)
}

// Names returns the DNS names the CA permits, in the order of its name
// constraints. Subdomains of these names are permitted too.
func (ca *CA) Names() []string {
	return slices.Clone(ca.Cert.PermittedDNSDomains)
}

// Permits reports whether a leaf certificate for the DNS name would satisfy
// the CA's name constraints: name equals a permitted name or is a subdomain
// of one. Matching ignores case. IP addresses, wildcards and malformed names
// are never permitted.
func (ca *CA) Permits(name string) bool {
	name = strings.ToLower(name)
	if checkName(name) != nil {
		return false
	}
	for _, p := range ca.Cert.PermittedDNSDomains {
		p = strings.ToLower(p)
		if name == p || strings.HasSuffix(name, "."+p) {
			return true
		}
	}
	return false
}

// Fingerprint returns the hex SHA-256 digest of the CA certificate (DER),
// which is how operators compare a CA across machines.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// validateNames checks every name with checkName and drops duplicates.
func validateNames(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: a CA needs at least one permitted name", ErrInvalidName)
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// checkName reports whether name is a lower-case DNS host name: labels of
// a-z, 0-9 and inner hyphens, 1 to 63 bytes each, 253 bytes in all, not an
// IP address, no wildcard, no leading or trailing dot.
func checkName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: %q: length must be 1 to 253 bytes", ErrInvalidName, name)
	}
	if net.ParseIP(name) != nil {
		return fmt.Errorf("%w: %q is an IP address", ErrInvalidName, name)
	}
	for label := range strings.SplitSeq(name, ".") {
		if !dnsname.HostLabel(label) {
			return fmt.Errorf(
				"%w: %q: bad label %q (want lower-case letters, digits and inner hyphens)",
				ErrInvalidName,
				name,
				label,
			)
		}
	}
	return nil
}

// caCommonName returns "modgate interception CA (<hostname>)", so that a
// person looking at a trust store can tell which gate installed the CA.
func caCommonName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "modgate interception CA"
	}
	return "modgate interception CA (" + host + ")"
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("pki: generating serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}
