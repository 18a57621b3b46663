package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/httperr"
)

// ParentProxyError is a refusal or failure of the parent proxy.
type ParentProxyError struct {
	Proxy  string // the redacted parent proxy URL
	Status int    // the parent's HTTP status; 0 for a transport failure
	Reason string // the refusal's X-Modgate-Error, or the first line of its text body
	Err    error
}

func (e *ParentProxyError) Error() string {
	if e.Status != 0 && e.Reason != "" {
		return fmt.Sprintf(
			"parent proxy %s answered CONNECT with %d %s: %s",
			e.Proxy,
			e.Status,
			http.StatusText(e.Status),
			e.Reason,
		)
	}
	if e.Status != 0 {
		return fmt.Sprintf("parent proxy %s answered CONNECT with %d %s", e.Proxy, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("parent proxy %s: %v", e.Proxy, e.Err)
}

// Unwrap returns the transport error.
func (e *ParentProxyError) Unwrap() error { return e.Err }

// dialParent opens a tunnel to t through the parent proxy.
//
// modgate cannot dial the address it checked when the parent proxy does
// the dialling, so it checks what it can: an IP literal always; a name it
// resolves itself, refusing the tunnel if any address is refused. A name
// it cannot resolve (common where only the parent resolves outside names)
// goes to the parent by name, and the host rules, which apply first,
// decide alone. The CONNECT names the host, not a resolved address, so
// the parent's own name-based rules keep working; guarding the network
// behind the parent (and any difference between its DNS answers and
// modgate's) is then the parent's job.
func (e *Egress) dialParent(ctx context.Context, t Target) (net.Conn, string, error) {
	resolved := "unresolved"
	ips, err := e.resolve(ctx, t)
	var re *ResolveError
	switch {
	case err == nil:
		resolved = ips[0].String()
	case !errors.As(err, &re):
		return nil, "", err
	}
	conn, err := ConnectVia(ctx, e.dial, e.cfg.ParentProxy, t.String(), nil)
	return conn, "parent " + e.cfg.ParentProxy.Host + " (" + resolved + ")", err
}

// ConnectVia dials an HTTP proxy (an https:// one verified with roots;
// nil means the system's) and asks it for a tunnel to target (host:port),
// with Basic Proxy-Authorization from the URL's userinfo. A refusal or
// failure is a *ParentProxyError.
func ConnectVia(
	ctx context.Context,
	dial DialFunc,
	parent *url.URL,
	target string,
	roots *x509.CertPool,
) (net.Conn, error) {
	perr := func(status int, err error) error {
		return &ParentProxyError{Proxy: httperr.Redact(parent), Status: status, Err: err}
	}
	c, err := dial(ctx, "tcp", proxyAddr(parent))
	if err != nil {
		return nil, perr(0, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if parent.Scheme == "https" {
		tc := tls.Client(c, &tls.Config{ServerName: parent.Hostname(), RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, perr(0, err)
		}
		c = tc
	}
	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth := basicAuth(parent.User); auth != "" {
		fmt.Fprintf(&req, "Proxy-Authorization: %s\r\n", auth)
	}
	req.WriteString("User-Agent: modgate\r\n\r\n")
	if _, err := io.WriteString(c, req.String()); err != nil {
		c.Close()
		return nil, perr(0, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, perr(0, err)
	}
	if resp.StatusCode != http.StatusOK {
		reason := resp.Header.Get("X-Modgate-Error")
		if reason == "" {
			reason = httperr.FirstLine(resp)
		}
		c.Close()
		return nil, &ParentProxyError{Proxy: httperr.Redact(parent), Status: resp.StatusCode, Reason: reason}
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &readBufConn{Conn: c, r: br}, nil
	}
	return c, nil
}

// proxyAddr is the host:port of a proxy URL (port 80 or 443 by default).
func proxyAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// basicAuth is the Basic authorization of u, or "".
func basicAuth(u *url.Userinfo) string {
	if u == nil {
		return ""
	}
	pw, _ := u.Password()
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw))
}

// readBufConn is a net.Conn whose first reads come from a bufio.Reader
// that read past a proxy's answer.
type readBufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readBufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying connection, if it can.
func (c *readBufConn) CloseWrite() error { return closeWrite(c.Conn) }

// closeWrite half-closes c if it supports that, else closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
