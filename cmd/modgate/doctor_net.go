package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/proxy/egress"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func checkTLS(ctx context.Context, st *doctorState) result {
	switch {
	case st.goproxyMode && strings.HasPrefix(st.lookupBase(), "http://"):
		return ok("not needed: GOPROXY is the gate's plain-HTTP endpoint")
	case st.goproxyMode && st.rootsErr == nil:
		return checkGateTLS(ctx, st)
	case st.httpsProxy == nil && !st.goproxyMode:
		return warn("", "not checked: neither HTTPS_PROXY nor GOPROXY names the gate")
	case st.httpsProxy == nil || st.proxyErr != nil:
		return warn("", "not checked: no usable HTTPS_PROXY")
	case st.rootsErr != nil:
		return fail(st.caFix(), "loading the roots the go command uses: %v", st.rootsErr)
	}
	var seen []string
	for _, host := range st.intercept {
		if host == proxy.VulnHost {
			continue // optional for the go command: the vulndb check (vuln.go)
		}
		issuer, err := tlsThroughProxy(ctx, st.httpsProxy, host, st.roots, st.opts)
		var ce *connectError
		var cve *tls.CertificateVerificationError
		switch {
		case errors.As(err, &ce):
			return fail(
				"check that HTTPS_PROXY is the gate and that the gate intercepts "+host+" (--intercept)",
				"CONNECT %s:443 through %s: %v",
				host,
				st.httpsProxy.Redacted(),
				err,
			)
		case errors.As(err, &cve):
			return fail(
				st.caFix(),
				"%s's certificate (issued by %q) does not verify with the roots the go command uses: %v",
				host,
				issuerOf(cve.UnverifiedCertificates),
				cve.Err,
			)
		case err != nil:
			return fail(
				"check that the gate runs and that HTTPS_PROXY points at it",
				"TLS to %s through %s: %v",
				host,
				st.httpsProxy.Redacted(),
				err,
			)
		}
		seen = append(seen, fmt.Sprintf("%s (issued by %q)", host, issuer))
	}
	return ok("%s: the certificates verify with the roots the go command uses", strings.Join(seen, ", "))
}

// checkGateTLS checks the certificate of the gate's HTTPS GOPROXY
// endpoint (serve --tls-listen), which the go command reaches directly.
func checkGateTLS(ctx context.Context, st *doctorState) result {
	ctx, cancel := context.WithTimeout(ctx, st.opts.timeout)
	defer cancel()
	u, _ := url.Parse(st.lookupBase())
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "443")
	}
	d := tls.Dialer{Config: &tls.Config{ServerName: u.Hostname(), RootCAs: st.roots}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cve):
		return fail(st.caFix(), "the gate's endpoint %s presents a certificate (issued by %q) that does not verify "+
			"with the roots the go command uses: %v", u.Host, issuerOf(cve.UnverifiedCertificates), cve.Err)
	case err != nil:
		return fail("check that the gate serves HTTPS there (serve --tls-listen)", "TLS to %s: %v", u.Host, err)
	}
	defer conn.Close()
	issuer := issuerOf(conn.(*tls.Conn).ConnectionState().PeerCertificates)
	return ok("%s (issued by %q): the gate's certificate verifies with the roots the go command uses", u.Host, issuer)
}

// connectError is a proxy's refusal of a CONNECT.
type connectError struct {
	status, reason string
}

func (e *connectError) Error() string {
	if e.reason == "" {
		return "the proxy answered " + e.status
	}
	return fmt.Sprintf("the proxy answered %s: %s", e.status, e.reason)
}

func issuerOf(certs []*x509.Certificate) string {
	if len(certs) == 0 {
		return ""
	}
	return certs[0].Issuer.CommonName
}

// tlsThroughProxy opens a tunnel to host:443 through proxy with CONNECT,
// as the go command does, and shakes hands with host, verifying its
// certificate with roots. It returns the issuer's common name.
func tlsThroughProxy(
	ctx context.Context,
	proxyURL *url.URL,
	host string,
	roots *x509.CertPool,
	o doctorOptions,
) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	conn, err := egress.ConnectVia(ctx, (&net.Dialer{}).DialContext, proxyURL, net.JoinHostPort(host, "443"), roots)
	var pe *egress.ParentProxyError
	switch {
	case errors.As(err, &pe) && pe.Status != 0:
		return "", &connectError{status: fmt.Sprintf("%d %s", pe.Status, http.StatusText(pe.Status)), reason: pe.Reason}
	case errors.As(err, &pe):
		return "", fmt.Errorf("reaching the proxy %s: %w", pe.Proxy, pe.Err)
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: roots})
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return issuerOf(tc.ConnectionState().PeerCertificates), nil
}

// firstLine is the gate's X-Modgate-Error, else the first line of a
// text body.
func firstLine(resp *http.Response) string {
	if h := resp.Header.Get("X-Modgate-Error"); h != "" {
		return h
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 648))
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

func checkLookup(ctx context.Context, st *doctorState) result {
	s, skip := st.sumdb()
	if skip != nil {
		return *skip
	}
	base := st.lookupBase()
	switch {
	case base == "":
		return warn("", "not checked: GOPROXY=%s names no proxy first", st.goenv["GOPROXY"])
	case !st.goproxyMode && (st.httpsProxy == nil || st.proxyErr != nil):
		return warn("", "not checked: without HTTPS_PROXY the lookup would not go through the gate")
	}
	m := st.module
	target := base + "/sumdb/" + s.name + "/lookup/" + mustEscape(m)
	body, err := st.get(ctx, target)
	if err != nil {
		return fail("see the checks above (gate, HTTPS_PROXY, NO_PROXY, TLS); the gate's log names the request", "%v", err)
	}
	id, text, rest, err := tlog.ParseRecord(body)
	if err != nil {
		return fail("", "GET %s: %v", target, err)
	}
	if !strings.Contains("\n"+string(text), "\n"+m.Path+" "+m.Version+" ") {
		return fail("", "GET %s: record %d does not name %s", target, id, m)
	}
	verifiers := []note.Verifier{s.verifier}
	if gv, err := note.NewVerifier(st.gateKey); err == nil && st.gateKey != s.key {
		verifiers = append(verifiers, gv)
	}
	n, err := note.Open(rest, note.VerifierList(verifiers...))
	if err == nil && !signedBy(n, s.verifier) {
		err = errors.New("no signature by GOSUMDB's key")
	}
	if err != nil {
		return fail("see the GOSUMDB check", "%s: the tree note does not verify with GOSUMDB's key: %v", m, err)
	}
	return ok("%s: record %d, tree note signed by %s", m, id, signerNames(n))
}

func signedBy(n *note.Note, v note.Verifier) bool {
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return true
		}
	}
	return false
}

func mustEscape(m module.Version) string {
	p, _ := module.EscapePath(m.Path)
	v, _ := module.EscapeVersion(m.Version)
	return p + "@" + v
}

// get fetches target as the go command would: https through HTTPS_PROXY
// (unless NO_PROXY exempts the host), with the go command's roots.
func (st *doctorState) get(ctx context.Context, target string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, st.opts.timeout)
	defer cancel()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: st.roots},
		Proxy: func(r *http.Request) (*url.URL, error) {
			if r.URL.Scheme != "https" || st.httpsProxy == nil {
				return nil, nil
			}
			for _, e := range strings.Split(getenvAny(st.getenv, "NO_PROXY", "no_proxy"), ",") {
				if noProxyMatches(e, r.URL.Hostname(), "443") {
					return nil, nil
				}
			}
			return st.httpsProxy, nil
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", target, resp.Status, firstLine(resp))
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// goRoots returns the roots the go command verifies TLS with, read with
// getenv's SSL_CERT_FILE and SSL_CERT_DIR. On Linux it follows
// crypto/x509's loadSystemRoots; on Windows and macOS the go command asks
// the platform's verifier (a nil pool); elsewhere this process's system
// pool stands in.
func goRoots(getenv env) (*x509.CertPool, error) {
	switch runtime.GOOS {
	case "linux":
		return unixRoots(getenv, linuxCertFiles, linuxCertDirs)
	case "windows", "darwin", "ios":
		return nil, nil
	}
	return x509.SystemCertPool()
}

// The files and directories crypto/x509 reads on Linux (root_linux.go).
var (
	linuxCertFiles = []string{
		"/etc/ssl/certs/ca-certificates.crt",
		"/etc/pki/tls/certs/ca-bundle.crt",
		"/etc/ssl/ca-bundle.pem",
		"/etc/pki/tls/cacert.pem",
		"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
		"/etc/ssl/cert.pem",
	}
	linuxCertDirs = []string{"/etc/ssl/certs", "/etc/pki/tls/certs"}
)

// unixRoots is crypto/x509's loadSystemRoots (root_unix.go) with the
// environment read through getenv: the first readable file of
// SSL_CERT_FILE (else files), then every file in each directory of the
// colon list SSL_CERT_DIR (else dirs), skipping symlinks within a directory.
func unixRoots(getenv env, files, dirs []string) (*x509.CertPool, error) {
	roots, found := x509.NewCertPool(), false
	if f := getenv("SSL_CERT_FILE"); f != "" {
		files = []string{f}
	}
	var firstErr error
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err == nil {
			found = roots.AppendCertsFromPEM(data) || found
			break
		}
		if firstErr == nil && !os.IsNotExist(err) {
			firstErr = err
		}
	}
	if d := getenv("SSL_CERT_DIR"); d != "" {
		dirs = strings.Split(d, ":")
	}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if firstErr == nil && !os.IsNotExist(err) {
				firstErr = err
			}
			continue
		}
		for _, e := range entries {
			if e.Type()&os.ModeSymlink != 0 {
				if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && !strings.Contains(target, "/") {
					continue
				}
			}
			if data, err := os.ReadFile(dir + "/" + e.Name()); err == nil {
				found = roots.AppendCertsFromPEM(data) || found
			}
		}
	}
	if found || firstErr == nil {
		return roots, nil
	}
	return nil, firstErr
}
