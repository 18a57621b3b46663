package proxy

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/egress"
)

// fakeParent is a corporate parent proxy: it requires Basic
// Proxy-Authorization, tunnels CONNECTs to the address its own "DNS" (a
// map) gives, and forwards absolute-form http requests.
type fakeParent struct {
	url  *url.URL // with the credentials
	auth string   // the Proxy-Authorization it wants
	dns  map[string]string

	mu       sync.Mutex
	requests []string // "CONNECT host:port" or "GET http://..."
}

func startParent(t *testing.T, dns map[string]string) *fakeParent {
	t.Helper()
	p := &fakeParent{auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("corp:s3cret")), dns: dns}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p.url = &url.URL{Scheme: "http", User: url.UserPassword("corp", "s3cret"), Host: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *fakeParent) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

func (p *fakeParent) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	target := req.Host
	if req.Method != http.MethodConnect {
		target = req.URL.String()
	}
	p.mu.Lock()
	p.requests = append(p.requests, req.Method+" "+target)
	p.mu.Unlock()
	if req.Header.Get("Proxy-Authorization") != p.auth {
		io.WriteString(
			c,
			"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
		)
		return
	}
	host, port, _ := net.SplitHostPort(req.Host)
	if req.Method != http.MethodConnect && port == "" {
		host, port = req.Host, "80"
	}
	addr := net.JoinHostPort(p.dns[host], port)
	up, err := net.Dial("tcp", addr)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	defer up.Close()
	if req.Method == http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, up)
		return
	}
	req.Header.Del("Proxy-Authorization")
	req.Write(up)
	resp, err := http.ReadResponse(bufio.NewReader(up), req)
	if err == nil {
		resp.Write(c)
	}
}

func TestEgressParentProxy(t *testing.T) {
	echoHost, echoPort := echoServer(t)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "site") }))
	defer site.Close()
	sitePort := mustParseURL(t, site.URL).Port()
	parent := startParent(t, map[string]string{"outside.test": echoHost, "site.test": "127.0.0.1"})
	rules := hostRules{rules: map[string]policy.Action{
		"outside.test:" + fmt.Sprint(echoPort): policy.Allow, "private.test:443": policy.Allow,
		"10.1.2.3:443": policy.Allow, "site.test:" + sitePort: policy.Allow,
	}}
	// modgate's DNS knows private.test only; outside.test resolves at the parent.
	resolver := fakeResolver{"private.test": {"10.0.0.7"}}
	for _, tt := range []struct {
		name     string
		parent   *url.URL
		target   string
		want     int
		wantBody string
		wantSeen string // what the parent must have been asked
	}{
		{"tunnel by name through the parent", parent.url, "outside.test:" + fmt.Sprint(echoPort), 200, "",
			"CONNECT outside.test:" + fmt.Sprint(echoPort)},
		{"name modgate resolves to a private address", parent.url, "private.test:443", 403,
			"10.0.0.7 is a private address", ""},
		{"private IP literal", parent.url, "10.1.2.3:443", 403, "private address", ""},
		{"denied host never reaches the parent", parent.url, "denied.test:443", 403, "no egress rule allows", ""},
		{"wrong credentials", &url.URL{Scheme: "http", User: url.UserPassword("corp", "wrong"), Host: parent.url.Host},
			"outside.test:" + fmt.Sprint(echoPort), 502, "answered CONNECT with 407", "CONNECT outside.test"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(parent.log())
			s := startEgressServer(
				t,
				egress.Config{Policy: func() egress.HostPolicy { return rules }, Resolver: resolver, ParentProxy: tt.parent},
			)
			r, c, br := s.connect(t, tt.target)
			seen := strings.Join(parent.log()[before:], "\n")
			if tt.wantSeen == "" && seen != "" {
				t.Errorf("the parent was asked %q, want nothing", seen)
			}
			if !strings.Contains(seen, tt.wantSeen) {
				t.Errorf("the parent was asked %q, want %q", seen, tt.wantSeen)
			}
			if tt.want != 200 {
				checkErrorBody(t, "CONNECT "+tt.target, r, tt.want, tt.wantBody)
				if strings.Contains(string(r.body), "s3cret") || strings.Contains(string(r.body), "wrong") {
					t.Errorf("the answer shows the parent's credentials: %q", r.body)
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("CONNECT: %d %s", r.status, r.body)
			}
			checkEcho(t, c, br)
			c.Close()
			waitLog(t, s.logs, "connect", func(rec map[string]any) bool {
				return rec["decision"] == "tunnel" && strings.Contains(fmt.Sprint(rec["resolved"]), "parent "+parent.url.Host)
			})
		})
	}
	t.Run("plain http through the parent", func(t *testing.T) {
		before := len(parent.log())
		s := startEgressServer(
			t,
			egress.Config{Policy: func() egress.HostPolicy { return rules }, Resolver: resolver, ParentProxy: parent.url},
		)
		client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: s.addr})}}
		resp, err := client.Get("http://site.test:" + sitePort + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "site" {
			t.Fatalf("GET through modgate and the parent: %d %q", resp.StatusCode, body)
		}
		if seen := strings.Join(parent.log()[before:], "\n"); !strings.Contains(seen, "GET http://site.test:"+sitePort+"/x") {
			t.Errorf("the parent was asked %q", seen)
		}
	})
}

// TestHTTPClientParentProxy checks that the upstream client sends modgate's
// own fetches through the parent proxy with its credentials, for http and
// (through CONNECT) https upstreams.
func TestHTTPClientParentProxy(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "plain") }))
	defer plain.Close()
	secure := httptest.NewTLSServer(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "secure") }),
	)
	defer secure.Close()
	parent := startParent(t, map[string]string{"plain.test": "127.0.0.1", "127.0.0.1": "127.0.0.1"})
	client := NewHTTPClientWith(ClientOptions{ParentProxy: parent.url, Roots: []*x509.Certificate{secure.Certificate()}})
	defer client.CloseIdleConnections()
	for _, tt := range []struct{ url, want, seen string }{
		{"http://plain.test:" + mustParseURL(t, plain.URL).Port() + "/a", "plain", "GET http://plain.test:"},
		{secure.URL + "/b", "secure", "CONNECT " + mustParseURL(t, secure.URL).Host},
	} {
		before := len(parent.log())
		resp, err := client.Get(tt.url)
		if err != nil {
			t.Fatalf("GET %s: %v", tt.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tt.want {
			t.Errorf("GET %s: %q, want %q", tt.url, body, tt.want)
		}
		if seen := strings.Join(parent.log()[before:], "\n"); !strings.Contains(seen, tt.seen) {
			t.Errorf("GET %s: the parent was asked %q, want %q", tt.url, seen, tt.seen)
		}
	}
}

// TestHTTPClientStall checks that an upstream that stalls before its
// headers or in its body fails with ErrStalled within the stall timeout.
func TestHTTPClientStall(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	client := NewHTTPClientWith(ClientOptions{StallTimeout: 300 * time.Millisecond})
	for _, path := range []string{"/headers", "/body"} {
		t.Run(path, func(t *testing.T) {
			start := time.Now()
			u := &upstream{base: mustParseURL(t, srv.URL), client: client}
			_, err := u.fetch(context.Background(), path)
			if err == nil || !strings.Contains(err.Error(), "upstream stalled") {
				t.Fatalf("fetch %s: %v, want ErrStalled", path, err)
			}
			if statusOf(err) != http.StatusGatewayTimeout {
				t.Errorf("fetch %s: status %d, want 504", path, statusOf(err))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("fetch %s took %s", path, d)
			}
		})
	}
}
