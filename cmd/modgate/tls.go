package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/modgate/modgate/pki"
	"github.com/modgate/modgate/proxy"
)

// manageTimeout bounds how long serve waits at start for the certificates
// of --tls-names (from the ACME CA, on a first start).
const manageTimeout = 2 * time.Minute

// tlsOptions are serve's flags for the gate's own HTTPS GOPROXY endpoint.
type tlsOptions struct {
	listen    string // --tls-listen
	names     string // --tls-names, a comma list
	acmeCA    string // --acme-ca, the ACME directory URL
	acmeEmail string // --acme-email
	acmeRoot  string // --acme-ca-root, PEM roots for the ACME server's TLS

	nameList []string // --tls-names, checked: set by serve from tlsNames
}

// addTLSFlags adds the flags of the HTTPS endpoint to f.
func addTLSFlags(f *pflag.FlagSet, o *tlsOptions) {
	f.StringVar(
		&o.listen,
		"tls-listen",
		"",
		"also serve the GOPROXY endpoint over HTTPS on this address (needs --tls-names)",
	)
	f.StringVar(
		&o.names,
		"tls-names",
		"",
		"comma list of DNS names of the HTTPS endpoint; certificates come from the CA (a new CA permits them) or from --acme-ca",
	)
	f.StringVar(
		&o.acmeCA,
		"acme-ca",
		"",
		"ACME directory URL of an enterprise CA for the --tls-names certificates (TLS-ALPN-01 on port 443 of each name)",
	)
	f.StringVar(&o.acmeEmail, "acme-email", "", "contact address of the ACME account (with --acme-ca)")
	f.StringVar(
		&o.acmeRoot,
		"acme-ca-root",
		"",
		"PEM file of roots for the ACME server's TLS (with --acme-ca; default the system roots)",
	)
}

// tlsNames checks the flags and returns the HTTPS endpoint's names (none
// when --tls-listen is not set). A name may not be an intercepted host.
func (o tlsOptions) tlsNames(intercept []string) ([]string, error) {
	names := splitList(o.names)
	switch {
	case o.listen == "" && len(names) > 0:
		return nil, errors.New("--tls-names needs --tls-listen")
	case o.listen == "" && (o.acmeCA != "" || o.acmeEmail != "" || o.acmeRoot != ""):
		return nil, errors.New("--acme-ca, --acme-email and --acme-ca-root need --tls-listen and --tls-names")
	case o.listen == "":
		return nil, nil
	case len(names) == 0:
		return nil, errors.New("--tls-listen needs --tls-names: the DNS names clients use in GOPROXY=https://NAME:PORT")
	case o.acmeCA == "" && (o.acmeEmail != "" || o.acmeRoot != ""):
		return nil, errors.New("--acme-email and --acme-ca-root need --acme-ca")
	}
	if err := checkTLSNames(names, intercept); err != nil {
		return nil, err
	}
	return names, nil
}

// checkTLSNames checks the HTTPS endpoint's names: DNS host names (no IP
// addresses or wildcards) that are not intercepted hosts.
func checkTLSNames(names, intercept []string) error {
	for _, n := range names {
		if err := pki.CheckName(n); err != nil {
			return fmt.Errorf("--tls-names: %w (clients must reach the gate by a DNS name)", err)
		}
		if slices.Contains(intercept, n) {
			return fmt.Errorf("--tls-names: %s is an intercepted host; name the gate itself", n)
		}
	}
	return nil
}

// caNames returns the names the CA must also permit: the HTTPS
// endpoint's names, unless their certificates come from the ACME CA.
func (o tlsOptions) caNames() []string {
	if o.acmeCA != "" {
		return nil
	}
	return o.nameList
}

// allow extends the Allow of the CA's leaves (the intercepted hosts) with
// the HTTPS endpoint's names when the CA certifies them.
func (o tlsOptions) allow(intercepts func(string) bool) func(string) bool {
	names := o.caNames()
	return func(name string) bool { return intercepts(name) || slices.Contains(names, name) }
}

// errTLSNamesOutsideCA explains what to do when the CA in dataDir does not
// permit an HTTPS endpoint name: name constraints are fixed for life.
func errTLSNamesOutsideCA(ca *pki.CA, dataDir, name string) error {
	return fmt.Errorf(
		"--tls-names: the CA in %s does not permit %s (it permits %s), and a CA's name constraints cannot change: "+
			"move %s and %s out of %s, run modgate init --data-dir %s --tls-names %s (with your --intercept), and redistribute the new %s to every client; "+
			"or take the certificate from an enterprise ACME CA with --acme-ca",
		dataDir,
		name,
		strings.Join(ca.Names(), ", "),
		pki.CertFile,
		pki.KeyFile,
		dataDir,
		dataDir,
		name,
		pki.CertFile,
	)
}

// managedCerts obtains and renews the HTTPS endpoint's certificates:
// *pki.Leaves (from the CA) or *pki.ACME.
type managedCerts interface {
	Manage(ctx context.Context, names []string) error
	ManagedTLSConfig() *tls.Config
}

// serveTLS listens on --tls-listen and serves the gate's GOPROXY endpoint
// there over HTTPS, once the certificates of --tls-names are in place. It
// returns the listener's address and a func that stops the server. With
// no --tls-listen it does nothing.
func (g *gateParts) serveTLS(ctx context.Context, o serveOptions, log *zap.Logger) (string, func(), error) {
	if o.tls.listen == "" {
		return "", func() {}, nil
	}
	ln, err := net.Listen("tcp", o.tls.listen)
	if err != nil {
		return "", nil, fmt.Errorf("--tls-listen: %w", err)
	}
	certs, stopCerts, err := g.tlsCerts(ctx, o, ln.Addr().String(), log)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	srv := &http.Server{Handler: g.gate, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, ErrorLog: zap.NewStdLog(log.Named("https"))}
	// Serve first: an ACME CA validates the names on this very listener.
	go srv.Serve(tls.NewListener(proxy.IdleWriteListener(ln, o.writeIdle), certs.ManagedTLSConfig()))
	stop := func() {
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
		stopCerts()
	}
	mctx, cancel := context.WithTimeout(ctx, manageTimeout)
	defer cancel()
	if err := certs.Manage(mctx, o.tls.nameList); err != nil {
		stop()
		return "", nil, fmt.Errorf("--tls-names: %w", err)
	}
	g.egress.AddSelf(ln.Addr())
	g.progress.step("HTTPS GOPROXY endpoint on %s for %s", ln.Addr(), strings.Join(o.tls.nameList, ", "))
	return ln.Addr().String(), stop, nil
}

// tlsCerts returns the certificate source of the HTTPS endpoint listening
// on addr: the ACME CA of --acme-ca, or else the gate's Leaves (the CA).
func (g *gateParts) tlsCerts(
	ctx context.Context,
	o serveOptions,
	addr string,
	log *zap.Logger,
) (managedCerts, func(), error) {
	if o.tls.acmeCA == "" {
		return g.leaves, func() {}, nil
	}
	var roots *x509.CertPool
	if o.tls.acmeRoot != "" {
		pem, err := os.ReadFile(o.tls.acmeRoot)
		if err != nil {
			return nil, nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		if roots = x509.NewCertPool(); !roots.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--acme-ca-root %s: no PEM certificates found", o.tls.acmeRoot)
		}
	}
	a, err := pki.NewACME(ctx, pki.ACMEConfig{CA: o.tls.acmeCA, Email: o.tls.acmeEmail, TrustedRoots: roots,
		Dir: o.dataDir, ListenAddr: addr, Logger: libraryLogger(log.Named("acme"))})
	if err != nil {
		return nil, nil, fmt.Errorf("--acme-ca: %w", err)
	}
	return a, a.Stop, nil
}
