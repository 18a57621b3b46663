package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
)

// ErrNotServed reports a TLS handshake on a managed listener (see
// ManagedTLSConfig) for a server name that was not given to Manage.
var ErrNotServed = errors.New("pki: server name not served on this listener")

// CheckName reports whether name can be given to Manage (and to a CA's
// name constraints): a lower-case DNS host name, not an IP address, no
// wildcard, no trailing dot. Its errors wrap ErrInvalidName.
func CheckName(name string) error {
	return checkName(name)
}

// Manage obtains certificates for names now, from the CA, and hands them to
// certmagic's background maintenance, which renews each one when a third
// of its lifetime remains; handshakes never obtain or renew them. A name
// whose leaf is already stored (from an earlier run) is loaded, not issued
// again. Every name must be permitted by the CA's name constraints and by
// Allow; otherwise Manage fails with an error wrapping ErrNotPermitted or
// ErrNotAllowed before anything is issued. ctx bounds the issuance.
//
// Manage is for the gate's own HTTPS endpoint: serve its names with
// ManagedTLSConfig.
func (l *Leaves) Manage(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no names to manage", ErrInvalidName)
	}
	lower := make([]string, len(names))
	for i, n := range names {
		lower[i] = strings.ToLower(n)
		if err := checkName(lower[i]); err != nil {
			return err
		}
		if err := l.decide(lower[i]); err != nil {
			return err
		}
	}
	if err := l.managed.ManageSync(ctx, lower); err != nil {
		return fmt.Errorf("pki: managing certificates for %q: %w", lower, err)
	}
	l.names.add(lower...)
	return nil
}

// configFor is the Cache's GetConfigForCert: certificates for names given
// to Manage belong to the managed Config, which maintenance renews; all
// others to the on-demand Config, which maintenance skips.
func (l *Leaves) configFor(cert certmagic.Certificate) *certmagic.Config {
	for _, n := range cert.Names {
		if l.names.has(n) {
			return l.managed
		}
	}
	return l.magic
}

// ManagedTLSConfig returns a server tls.Config for the gate's own HTTPS
// endpoint: it presents the certificates of the names given to Manage (a
// ClientHello without SNI gets the first of them) and refuses every other
// name with ErrNotServed. It requires TLS 1.2 and offers HTTP/1.1.
func (l *Leaves) ManagedTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: l.names.serve(l.GetCertificate),
		NextProtos:     []string{"http/1.1"},
	}
}

// managedNames is the ordered set of names given to Manage. It is safe for
// concurrent use.
type managedNames struct {
	mu    sync.RWMutex
	names []string
}

// add adds names that are not in the set yet.
func (m *managedNames) add(names ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range names {
		if !slices.Contains(m.names, n) {
			m.names = append(m.names, n)
		}
	}
}

// has reports whether name (lower-case) is in the set.
func (m *managedNames) has(name string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Contains(m.names, name)
}

// first returns the first name added, or "".
func (m *managedNames) first() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.names) == 0 {
		return ""
	}
	return m.names[0]
}

// serve wraps get so that it answers only for names in the set: a hello
// without SNI is answered for the first name, any other name is refused
// with ErrNotServed. ACME TLS-ALPN-01 challenges (a hello offering only
// acme-tls/1) are passed to get as they are.
func (m *managedNames) serve(
	get func(*tls.ClientHelloInfo) (*tls.Certificate, error),
) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLSALPN {
			return get(hello)
		}
		name := strings.ToLower(hello.ServerName)
		if name == "" {
			if name = m.first(); name == "" {
				return nil, ErrNoServerName
			}
			h := *hello
			h.ServerName = name
			hello = &h
		}
		if !m.has(name) {
			return nil, fmt.Errorf("%w: %q", ErrNotServed, name)
		}
		return get(hello)
	}
}
