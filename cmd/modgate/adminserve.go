package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/proxy/audit"
)

// openPolicy opens the policy file: --policy, else <data-dir>/policy.yaml,
// which is written with the commented default if it is missing (an
// explicit --policy file must exist).
func openPolicy(ctx context.Context, o serveOptions, log *zap.Logger, src policy.Source) (*policy.File, error) {
	path := o.policy
	if path == "" {
		path = filepath.Join(o.dataDir, policyFile)
		wrote, err := ensurePolicyFile(path, policy.DefaultFile())
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if wrote {
			log.Info("wrote the default policy", zap.String("path", path))
		}
	}
	if src != nil { // a cluster: the file seeds the shared policy, then mirrors it
		return policy.OpenSource(ctx, src, path, log.Named("policy"))
	}
	f, err := policy.OpenFile(ctx, path, log.Named("policy"))
	if err != nil {
		return nil, fmt.Errorf("--policy: %w (check it with: modgate policy check %s)", err, path)
	}
	return f, nil
}

// adminAPI returns the authenticated admin API (/api/): the policy API
// over the policy file, auditing into the cache, and the other APIs in
// more (such as the witness API). facts may be nil.
func adminAPI(
	dataDir string,
	ca *x509.Certificate,
	file *policy.File,
	audit *audit.Log,
	facts func(ctx context.Context, module, version string) (policy.Facts, error),
	log *zap.Logger,
	more ...apiRoutes,
) http.Handler {
	mux := http.NewServeMux()
	admin.NewPolicyAPI(admin.PolicyAPIConfig{File: file, Audit: audit, Facts: facts, Logger: log.Named("admin")}).
		Register(mux)
	for _, api := range more {
		api.Register(mux)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return admin.RequireAuth(filepath.Join(dataDir, adminTokenFile), pool, mux)
}

// apiRoutes is an admin API that adds its routes to the /api/ mux.
type apiRoutes interface{ Register(mux *http.ServeMux) }

// listenAdmin listens on --admin-listen, over TLS with a certificate for
// modgate.admin from the CA when --admin-tls is set (client certificates
// requested, not required).
func (g *gateParts) listenAdmin(o serveOptions) (net.Listener, error) {
	var cfg *tls.Config
	if o.adminTLS {
		var err error
		if cfg, err = g.ca.AdminTLSConfig(); err != nil {
			return nil, fmt.Errorf("--admin-tls: %w", err)
		}
	}
	ln, err := net.Listen("tcp", o.adminListen)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}
