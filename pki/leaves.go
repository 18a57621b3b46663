package pki

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Notes on certmagic v0.25.6, from its source, that shape Leaves:
//
//   - certmagic.New fills every zero field from the package-level
//     certmagic.Default; a nil Storage becomes a FileStorage under $HOME.
//     NewLeaves therefore always sets Storage, Issuers, KeySource, Logger.
//   - On-demand certificates are renewed only during handshakes (the
//     maintenance loop skips OnDemand configs): a leaf in its renewal
//     window is served while a background renewal runs; an expired leaf
//     blocks the handshake until renewed. Both are local and fast here.
//   - The DecisionFunc is consulted only when loading or minting a leaf,
//     not when a leaf is already in memory, so GetCertificate checks the
//     CA and Allow itself on every handshake.
//   - Issuance is retried with backoff (up to 180 s in a handshake) unless
//     the error is certmagic.ErrNoRetry, which Issuer uses for refusals.
//   - OCSP stapling is attempted unless OCSP.DisableStapling; ACME renewal
//     information only when the stored metadata has an ACME window. Both
//     are off here, and leaves carry no OCSP, AIA or CRL URLs.
//   - Concurrent handshakes for one name share one issuance through
//     process-wide maps keyed by the name alone (not by Config or Cache).
//     Two Leaves in one process issuing for the same name at the same time
//     can therefore wait on, or be handed the result of, each other. Run
//     one Leaves per process.
//   - FileStorage writes files 0600 and creates directories 0700, but does
//     not tighten an existing directory; NewLeaves does. Lock files live in
//     <dir>/certs/locks; a lock left by a crash goes stale after 10 s.
//   - ManageSync on an OnDemand config only adds the names to its
//     allowlist, and maintenance skips certificates whose config (from
//     GetConfigForCert) is OnDemand. Names given to Manage therefore get a
//     second Config on the same Cache without OnDemand (see managed.go).

// ErrNotAllowed reports a server name that the caller's Allow func refused.
var ErrNotAllowed = errors.New("pki: server name not allowed")

// ErrNoServerName reports a ClientHello without SNI when no DefaultName is
// configured.
var ErrNoServerName = errors.New("pki: TLS client sent no server name (SNI)")

// acmeTLSALPN is the ALPN protocol of ACME TLS-ALPN-01 challenges, which
// certmagic would otherwise try to answer.
const acmeTLSALPN = "acme-tls/1"

// LeavesConfig configures Leaves. Its zero values mean the defaults
// documented on each field; CA and one of Dir or Storage are required.
type LeavesConfig struct {
	// CA signs the leaves. Required.
	CA *CA
	// Dir is modgate's data directory; leaves are stored under Dir/certs
	// (mode 0700, keys 0600) unless Storage is set.
	Dir string
	// Storage, if set, stores the leaves instead of Dir/certs.
	Storage certmagic.Storage
	// Allow decides which server names get a leaf, on top of the CA's
	// name constraints (which always apply). Nil allows every name the
	// CA permits. It is consulted on every handshake, so a name that
	// stops being allowed is refused even if its leaf is cached. It must
	// be safe for concurrent use and fast.
	Allow func(name string) bool
	// DefaultName is the server name used for a ClientHello without SNI.
	// Empty means such handshakes fail with ErrNoServerName.
	DefaultName string
	// Lifetime of each leaf; 0 means DefaultLeafLifetime (7 days).
	// certmagic renews a leaf once a third of its lifetime remains.
	Lifetime time.Duration
	// Logger receives certmagic's logs; nil means zap.NewNop().
	Logger *zap.Logger
}

// Leaves hands out leaf certificates for intercepted TLS through
// certmagic's on-demand TLS with an Issuer over the CA. A leaf is minted
// on the first handshake for a name (concurrent first handshakes share one
// issuance), then served from memory, stored for restarts, and renewed by
// certmagic during handshakes before it expires. Names given to Manage
// (the gate's own HTTPS endpoint) are instead obtained up front and renewed
// by certmagic's background maintenance. OCSP stapling and ACME renewal
// information are off, so Leaves never touches the network.
type Leaves struct {
	ca          *CA
	issuer      *Issuer
	allow       func(string) bool
	defaultName string
	cache       *certmagic.Cache
	magic       *certmagic.Config // on-demand: the intercepted hosts
	managed     *certmagic.Config // obtained up front, renewed by maintenance
	names       managedNames      // the names given to Manage
	stopOnce    sync.Once
}

// NewLeaves makes Leaves from cfg and starts certmagic's maintenance
// goroutine; call Stop when done. ctx bounds the setup only.
func NewLeaves(ctx context.Context, cfg LeavesConfig) (*Leaves, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.CA == nil {
		return nil, ErrNoCA
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	storage, err := leafStorage(cfg)
	if err != nil {
		return nil, err
	}
	l := &Leaves{
		ca:          cfg.CA,
		issuer:      &Issuer{CA: cfg.CA, Lifetime: cfg.Lifetime},
		allow:       cfg.Allow,
		defaultName: strings.ToLower(cfg.DefaultName),
	}
	if l.defaultName != "" {
		if err := l.decide(l.defaultName); err != nil {
			return nil, fmt.Errorf("pki: DefaultName: %w", err)
		}
	}
	l.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(c certmagic.Certificate) (*certmagic.Config, error) { return l.configFor(c), nil },
		Logger:           logger,
	})
	base := certmagic.Config{
		RenewalWindowRatio: certmagic.DefaultRenewalWindowRatio,
		Issuers:            []certmagic.Issuer{l.issuer},
		KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		OCSP:               certmagic.OCSPConfig{DisableStapling: true},
		DisableARI:         true,
		Storage:            storage,
		Logger:             logger,
	}
	l.managed = certmagic.New(l.cache, base)
	base.OnDemand = &certmagic.OnDemandConfig{
		DecisionFunc: func(_ context.Context, name string) error { return l.decide(name) },
	}
	l.magic = certmagic.New(l.cache, base)
	return l, nil
}

// leafStorage returns cfg.Storage, or a FileStorage under cfg.Dir/certs
// whose directory is made private (0700).
func leafStorage(cfg LeavesConfig) (certmagic.Storage, error) {
	if cfg.Storage != nil {
		return cfg.Storage, nil
	}
	if cfg.Dir == "" {
		// certmagic would fall back to a directory under $HOME.
		return nil, errors.New("pki: LeavesConfig needs Dir or Storage")
	}
	return privateStorage(filepath.Join(cfg.Dir, "certs"))
}

// privateStorage returns a FileStorage in dir, creating dir (0700) or
// tightening it to 0700. FileStorage writes its files 0600.
func privateStorage(dir string) (certmagic.Storage, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: creating certificate storage: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate storage: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("pki: making certificate storage private: %w", err)
		}
	}
	return &certmagic.FileStorage{Path: dir}, nil
}

// decide reports whether name may get a leaf: the CA must permit it and
// Allow (if set) must allow it.
func (l *Leaves) decide(name string) error {
	if !l.ca.Permits(name) {
		return fmt.Errorf("%w: %q", ErrNotPermitted, name)
	}
	if l.allow != nil && !l.allow(name) {
		return fmt.Errorf("%w: %q", ErrNotAllowed, name)
	}
	return nil
}

// GetCertificate returns the leaf for hello's server name, minting it on
// first use. A hello without SNI uses DefaultName, or fails with
// ErrNoServerName. Names the CA does not permit or Allow refuses fail
// every time, cached leaf or not. It is a tls.Config.GetCertificate.
func (l *Leaves) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	if name == "" {
		if l.defaultName == "" {
			return nil, ErrNoServerName
		}
		h := *hello
		h.ServerName = l.defaultName
		hello, name = &h, l.defaultName
	}
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmeTLSALPN {
		return nil, fmt.Errorf("pki: %q: ACME TLS-ALPN challenges are not served", name)
	}
	if err := l.decide(name); err != nil {
		return nil, err
	}
	magic := l.magic
	if l.names.has(name) {
		magic = l.managed // never obtained or renewed during a handshake
	}
	cert, err := magic.GetCertificate(hello)
	if err != nil {
		return nil, fmt.Errorf("pki: leaf for %q: %w", name, err)
	}
	return cert, nil
}

// TLSConfig returns a new server tls.Config that uses GetCertificate,
// requires TLS 1.2 or later, and offers HTTP/1.1 (what the go command
// speaks to a module proxy).
func (l *Leaves) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: l.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// Issued returns how many leaf certificates these Leaves have minted
// (including renewals); loading a stored leaf does not count.
func (l *Leaves) Issued() int64 {
	return l.issuer.Issued()
}

// Stop stops certmagic's maintenance goroutine. It is safe to call more
// than once. Leaves must not be used after Stop.
func (l *Leaves) Stop() {
	l.stopOnce.Do(l.cache.Stop)
}
