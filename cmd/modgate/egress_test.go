package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawConnect sends CONNECT target to the gate and returns the status and body.
func rawConnect(t *testing.T, g *gateProc, target string) (int, string, http.Header) {
	t.Helper()
	c, err := net.Dial("tcp", g.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// TestEgressRefusals runs the real binary and checks what a CONNECT to a
// host that is not intercepted gets, and that each decision is logged.
func TestEgressRefusals(t *testing.T) {
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"), "--allow-range", "127.0.0.0/8")
	up.ResetCounts() // the witness's poll at start
	upHost := strings.TrimPrefix(up.URL, "http://")
	for _, tt := range []struct {
		name, target string
		want         int
		wantBody     string
	}{
		{"no egress rule allows it", upHost, 403, "no egress rule allows 127.0.0.1"},
		{"metadata address", "169.254.169.254:80", 403, "refused"},
		{"the gate itself", g.listen, 403, "refused"},
		{"intercepted host, other port", "proxy.golang.org:8443", 403, "on port 443 only"},
		{"port out of range", "example.org:65536", 400, "port must be"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body, h := rawConnect(t, g, tt.target)
			if status != tt.want || !strings.HasPrefix(body, "modgate: ") || !strings.Contains(body, tt.wantBody) || h.Get("X-Modgate-Error") == "" {
				t.Errorf("CONNECT %s: %d %q (X-Modgate-Error %q), want %d mentioning %q", tt.target, status, body, h.Get("X-Modgate-Error"), tt.want, tt.wantBody)
			}
		})
	}
	waitFor(t, g, `"msg":"connect"`, `"decision":"refuse"`, `"client":"127.0.0.1:`, `"duration"`)
	if n := len(up.RequestLog()); n != 0 {
		t.Errorf("refused CONNECTs reached the upstream: %q", up.RequestLog())
	}
}

// waitFor waits until one line of the gate's log contains every part.
func waitFor(t *testing.T, g *gateProc, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(g.Log(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line with %q:\n%s", parts, g.Log())
}

// parentProxy is a corporate proxy for the end-to-end tests: it wants
// Basic credentials and forwards absolute-form http requests.
type parentProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func startParentProxy(t *testing.T, user, pass string) *parentProxy {
	t.Helper()
	p := &parentProxy{}
	want := "Basic " + basicCreds(user, pass)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.String())
		p.mu.Unlock()
		if r.Header.Get("Proxy-Authorization") != want {
			w.Header().Set("Proxy-Authenticate", "Basic")
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		out.Header.Del("Proxy-Authorization")
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	p.addr = ln.Addr().String()
	return p
}

func basicCreds(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func (p *parentProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// TestParentProxy checks that --parent-proxy carries modgate's own
// upstream fetches, with the credentials of the URL, and that the go
// command gets its modules through it.
func TestParentProxy(t *testing.T) {
	parent := startParentProxy(t, "corp", "s3cret")
	parentURL := (&url.URL{Scheme: "http", User: url.UserPassword("corp", "s3cret"), Host: parent.addr}).String()
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"), "--parent-proxy", parentURL)
	c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", "example.com/dep@v1.0.0")
	seen := strings.Join(parent.requests(), "\n")
	for _, want := range []string{up.URL + "/example.com/dep/@v/v1.0.0.zip", up.URL + "/sumdb/sum.golang.org/lookup/example.com/dep@v1.0.0"} {
		if !strings.Contains(seen, "GET "+want) {
			t.Errorf("the parent proxy did not carry GET %s; it saw:\n%s", want, seen)
		}
	}
	if strings.Contains(g.Log(), "s3cret") {
		t.Errorf("modgate logged the parent proxy's password")
	}

	// Wrong credentials: the gate answers 502 with the parent's refusal.
	bad := (&url.URL{Scheme: "http", User: url.UserPassword("corp", "wrong"), Host: parent.addr}).String()
	_, g2 := fakeGate(t, filepath.Join(t.TempDir(), "data"), "--parent-proxy", bad)
	r, err := http.Get("http://" + g2.listen + "/example.com/dep/@v/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "407") || strings.Contains(string(body), "wrong") {
		t.Errorf("through a parent that refuses the credentials: %d %q, want 502 naming 407 without the password", r.StatusCode, body)
	}
}

// TestEgressTunnel runs the real binary with egress rules in its policy
// file: an allowed host is tunnelled to the address modgate checked, the
// same host on another port is refused, and the tunnel is logged with its
// byte counts.
func TestEgressTunnel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	doc := fmt.Sprintf("rules: []\negress:\n  rules:\n    - id: echo\n      action: allow\n      host: localhost\n      ports: [%d]\n      reason: the test's echo server\n", port)
	if err := os.WriteFile(policyFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, g := fakeGate(t, filepath.Join(dir, "data"), "--policy", policyFile, "--allow-range", "127.0.0.0/8,::1/128")

	c, err := net.Dial("tcp", g.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n", port, port)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT localhost:%d: %v %v", port, resp, err)
	}
	io.WriteString(c, "hello\n")
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(br); err != nil || string(got) != "hello\n" {
		t.Fatalf("through the tunnel: %q, %v", got, err)
	}
	c.Close()
	waitFor(t, g, `"msg":"connect"`, `"decision":"tunnel"`, `"rule":"echo"`, `"host":"localhost"`, `"bytes_out":6`, `"bytes_in":6`, `"resolved":"`)

	if status, body, _ := rawConnect(t, g, fmt.Sprintf("localhost:%d", port+1)); status != 403 || !strings.Contains(body, "no egress rule allows localhost") {
		t.Errorf("CONNECT to another port: %d %q, want 403", status, body)
	}
}
