package pki

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Notes on certmagic's ACMEIssuer (v0.25.6) that shape ACME:
//
//   - With interactive issuance (ManageSync, ObtainCertSync) and no e-mail
//     address, its PreCheck prompts on stdin and stdout and sets the
//     package-level DefaultACME.Agreed. ACME therefore only uses
//     ManageAsync (never interactive) and reports the first failure of
//     each name through the Config's OnEvent ("cert_failed").
//   - The TLS-ALPN-01 solver tries to bind ListenHost:AltTLSALPNPort
//     (port 443 by default) and answers challenges there itself; if that
//     address is already in use it assumes the listener in use answers
//     them. ACME sets both to the TLS listener's address, so no other
//     listener is ever opened and the challenges are answered by
//     ManagedTLSConfig (which offers acme-tls/1).
//   - The HTTP client follows HTTPS_PROXY unless HTTPProxy is set; the
//     gate's own requests never go through a proxy taken from the
//     environment (which may well point at the gate itself).
//   - FileStorage writes every file through a temporary file of mode 0600
//     (certificate, key, ACME account key and metadata alike).

// ACMEConfig configures ACME. Its zero values mean the defaults documented
// on each field; CA, ListenAddr and one of Dir or Storage are required.
type ACMEConfig struct {
	// CA is the ACME directory URL of the enterprise CA, such as
	// https://acme.corp.example/acme/directory. Required.
	CA string
	// Email is the contact address of the ACME account; empty means an
	// account without contact.
	Email string
	// TrustedRoots verify the ACME server's TLS certificate; nil means the
	// system roots.
	TrustedRoots *x509.CertPool
	// Dir is modgate's data directory; the ACME account, certificates and
	// keys are stored under Dir/acme (mode 0700, files 0600) unless Storage
	// is set.
	Dir string
	// Storage, if set, stores them instead of Dir/acme.
	Storage certmagic.Storage
	// ListenAddr is the address the TLS listener serving ManagedTLSConfig
	// is bound to (host:port, as the listener reports it). TLS-ALPN-01
	// challenges are answered on that listener; the ACME server connects
	// to port 443 of each name, so that port must reach it. Required.
	ListenAddr string
	// Logger receives certmagic's logs; nil means zap.NewNop().
	Logger *zap.Logger
}

// ACME obtains and renews the certificates of the gate's own HTTPS
// endpoint from an enterprise ACME CA, through certmagic's ACMEIssuer
// with the TLS-ALPN-01 challenge (the HTTP-01 challenge is off: modgate
// does not own port 80). Certificates are renewed in the background by
// certmagic's maintenance.
type ACME struct {
	cache *certmagic.Cache
	magic *certmagic.Config
	names managedNames
	caURL string

	life context.Context // background obtain and renewal; ended by Stop
	stop context.CancelFunc
	once sync.Once

	mu     sync.Mutex
	failed map[string]error // the last failure to obtain each name
}

// NewACME makes ACME from cfg and starts certmagic's maintenance
// goroutine; call Stop when done. ctx bounds the setup only.
func NewACME(ctx context.Context, cfg ACMEConfig) (*ACME, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pki: ACME CA %q: want an https:// directory URL", cfg.CA)
	}
	host, port, err := splitListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, err
	}
	storage, err := acmeStorage(cfg)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	a := &ACME{caURL: cfg.CA, failed: map[string]error{}}
	a.life, a.stop = context.WithCancel(context.Background())
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return a.magic, nil },
		Logger:           logger,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		RenewalWindowRatio: certmagic.DefaultRenewalWindowRatio,
		KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		Storage:            storage,
		Logger:             logger,
		OnEvent:            a.onEvent,
	})
	a.magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(a.magic, certmagic.ACMEIssuer{
		CA:                   cfg.CA,
		Email:                cfg.Email,
		Agreed:               true,
		TrustedRoots:         cfg.TrustedRoots,
		DisableHTTPChallenge: true,
		ListenHost:           host,
		AltTLSALPNPort:       port,
		Logger:               logger,
		HTTPProxy:            func(*http.Request) (*url.URL, error) { return nil, nil },
	})}
	return a, nil
}

// splitListenAddr splits the TLS listener's address for the TLS-ALPN-01
// solver; an unspecified host ("[::]", "0.0.0.0") stays as it is, so that
// the solver finds the very address in use.
func splitListenAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("pki: ACME listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("pki: ACME listen address %q: want the bound host:port of the TLS listener", addr)
	}
	return host, port, nil
}

// acmeStorage returns cfg.Storage, or a FileStorage under cfg.Dir/acme
// whose directory is made private (0700).
func acmeStorage(cfg ACMEConfig) (certmagic.Storage, error) {
	if cfg.Storage != nil {
		return cfg.Storage, nil
	}
	if cfg.Dir == "" {
		// certmagic would fall back to a directory under $HOME.
		return nil, errors.New("pki: ACMEConfig needs Dir or Storage")
	}
	return privateStorage(filepath.Join(cfg.Dir, "acme"))
}

// onEvent records failures to obtain a certificate, for Manage.
func (a *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	if event != "cert_failed" {
		return nil
	}
	name, _ := data["identifier"].(string)
	err, _ := data["error"].(error)
	if renewal, _ := data["renewal"].(bool); renewal || name == "" || err == nil {
		return nil
	}
	a.mu.Lock()
	a.failed[name] = err
	a.mu.Unlock()
	return nil
}

// Manage loads the stored certificates of names, obtains the missing ones
// from the ACME CA, and returns once every name has a certificate. It
// fails with the first error of a name's first attempt, or when ctx ends
// (certmagic keeps retrying in the background until Stop). The
// certificates are then renewed in the background. The TLS listener
// serving ManagedTLSConfig must be accepting connections already: the CA
// validates each name with a TLS-ALPN-01 challenge answered there.
func (a *ACME) Manage(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no names to manage", ErrInvalidName)
	}
	lower := make([]string, len(names))
	for i, n := range names {
		lower[i] = strings.ToLower(n)
		if err := checkName(lower[i]); err != nil {
			return err
		}
	}
	a.mu.Lock()
	for _, n := range lower {
		delete(a.failed, n)
	}
	a.mu.Unlock()
	a.names.add(lower...)
	if err := a.magic.ManageAsync(a.life, lower); err != nil {
		return fmt.Errorf("pki: managing certificates for %q: %w", lower, err)
	}
	return a.wait(ctx, lower)
}

// wait polls until every name has a certificate in the cache, a name's
// first attempt failed, or ctx ends.
func (a *ACME) wait(ctx context.Context, names []string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var pending []string
		for _, n := range names {
			if len(a.cache.AllMatchingCertificates(n)) > 0 {
				continue
			}
			a.mu.Lock()
			err := a.failed[n]
			a.mu.Unlock()
			if err != nil {
				return fmt.Errorf("pki: obtaining a certificate for %s from the ACME CA %s: %w", n, a.caURL, err)
			}
			pending = append(pending, n)
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pki: no certificate for %q from the ACME CA %s yet: %w", pending, a.caURL, ctx.Err())
		case <-tick.C:
		}
	}
}

// ManagedTLSConfig returns the server tls.Config of the gate's own HTTPS
// endpoint: it presents the certificates of the names given to Manage (a
// ClientHello without SNI gets the first of them), refuses every other
// name with ErrNotServed, and answers the ACME server's TLS-ALPN-01
// challenges. It requires TLS 1.2 and offers HTTP/1.1 and acme-tls/1.
func (a *ACME) ManagedTLSConfig() *tls.Config {
	cfg := a.magic.TLSConfig() // GetCertificate and acme-tls/1
	cfg.MinVersion = tls.VersionTLS12
	cfg.NextProtos = append([]string{"http/1.1"}, cfg.NextProtos...)
	cfg.GetCertificate = a.names.serve(cfg.GetCertificate)
	return cfg
}

// Stop ends background issuance and certmagic's maintenance goroutine. It
// is safe to call more than once. ACME must not be used after Stop.
func (a *ACME) Stop() {
	a.once.Do(func() {
		a.stop()
		a.cache.Stop()
	})
}
