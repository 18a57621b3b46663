package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/pki"
)

// startServer serves tg's gate with proxy.Server on a loopback listener,
// intercepting with leaves from a new CA. It returns the proxy URL and a
// client that uses it and trusts the CA.
func startServer(t *testing.T, tg *testGate) (*url.URL, *http.Client) {
	t.Helper()
	ca, err := pki.NewCA(DefaultIntercept)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := pki.NewLeaves(t.Context(), pki.LeavesConfig{CA: ca, Dir: t.TempDir(), Allow: tg.gate.Intercepts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(leaves.Stop)
	srv := NewServer(tg.gate, leaves.TLSConfig(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	proxyURL := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return proxyURL, &http.Client{Transport: tr}
}

func TestServerIntercepts(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	proxyURL, client := startServer(t, tg)
	tests := []struct {
		name, base, path string
		host             string // Host header, if not the URL's
		want             int
		upstream         string // path of the same bytes at the fake, if any
	}{
		{"list", "https://proxy.golang.org", "/example.com/lib/@v/list", "", 200, "/example.com/lib/@v/list"},
		{"zip", "https://proxy.golang.org", modPath(t, libV100, ".zip"), "", 200, modPath(t, libV100, ".zip")},
		{"go-escaped upper case", "https://proxy.golang.org", "/example.com/%21upper/@v/v1.0.0.mod", "", 200, "/example.com/!upper/@v/v1.0.0.mod"},
		{"sumdb through the proxy host", "https://proxy.golang.org", "/sumdb/sum.golang.org/supported", "", 200, ""},
		{"sumdb host supported", "https://sum.golang.org", "/supported", "", 200, ""},
		{"sumdb host lookup", "https://sum.golang.org", "/lookup/example.com/lib@v1.0.0", "", 200, ""},
		{"sumdb host tile", "https://sum.golang.org", "/tile/8/0/000.p/1", "", 200, "/sumdb/sum.golang.org/tile/8/0/000.p/1"},
		{"bad path", "https://proxy.golang.org", "/example.com/Upper/@v/list", "", 400, ""},
		{"module path on the sumdb host", "https://sum.golang.org", "/example.com/lib/@v/list", "", 400, ""},
		{"other Host header", "https://proxy.golang.org", "/example.com/lib/@v/list", "example.org", 400, ""},
		{"direct GOPROXY", "http://" + proxyURL.Host, "/example.com/lib/@v/list", "", 200, "/example.com/lib/@v/list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client
			if strings.HasPrefix(tt.base, "http://") {
				c = http.DefaultClient
			}
			r := doHost(t, c, tt.base, tt.path, tt.host)
			if tt.want != http.StatusOK {
				checkErrorBody(t, tt.base+tt.path, r, tt.want)
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("GET %s%s: %d %q", tt.base, tt.path, r.status, r.body)
			}
			if tt.upstream != "" {
				if want := upstreamBytes(t, tg.fake, tt.upstream); !bytes.Equal(r.body, want) {
					t.Errorf("body differs from the upstream's %s", tt.upstream)
				}
			}
		})
	}
}

// doHost is get through client, with the Host header set to host if not "".
func doHost(t *testing.T, client *http.Client, base, rawPath, host string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", base, rawPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

// TestServerInterceptsOnlyItsNames checks that a CONNECT to an intercepted
// host cannot be used to get a certificate for another name.
func TestServerInterceptsOnlyItsNames(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	proxyURL, client := startServer(t, tg)
	roots := client.Transport.(*http.Transport).TLSClientConfig.RootCAs
	for _, sni := range []string{"example.org", "proxy.golang.org.example.org", "localhost"} {
		t.Run(sni, func(t *testing.T) {
			conn, err := net.Dial("tcp", proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			tc := tls.Client(&bufConn{conn, br}, &tls.Config{ServerName: sni, RootCAs: roots})
			if err := tc.Handshake(); err == nil {
				t.Errorf("TLS handshake for %s through an intercepted CONNECT succeeded; want it refused", sni)
			}
		})
	}
}

// bufConn is a net.Conn whose reads go through a bufio.Reader.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestServerRefuses(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{})
	proxyURL, _ := startServer(t, tg)
	tests := []struct {
		name, requestLine string
	}{
		{"CONNECT other host", "CONNECT example.org:443 HTTP/1.1"},
		{"CONNECT intercepted host, other port", "CONNECT proxy.golang.org:80 HTTP/1.1"},
		{"CONNECT intercepted host, port 8443", "CONNECT sum.golang.org:8443 HTTP/1.1"},
		{"CONNECT loopback", "CONNECT 127.0.0.1:443 HTTP/1.1"},
		{"CONNECT metadata", "CONNECT 169.254.169.254:80 HTTP/1.1"},
		{"plain http proxying", "GET http://example.org/ HTTP/1.1"},
		{"plain http to an intercepted host", "GET http://proxy.golang.org/example.com/lib/@v/list HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			method, target, _ := strings.Cut(tt.requestLine, " ")
			target, _, _ = strings.Cut(target, " ")
			host := target
			if u, err := url.Parse(target); err == nil && u.Host != "" {
				host = u.Host
			}
			fmt.Fprintf(conn, "%s\r\nHost: %s\r\n\r\n", tt.requestLine, host)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			checkErrorBody(t, tt.requestLine, response{resp.StatusCode, resp.Header, body}, http.StatusForbidden, "refused")
		})
	}
	if log := tg.fake.RequestLog(); len(log) != 0 {
		t.Errorf("refused requests reached the upstream: %q", log)
	}
}
