package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debugAddr returns the address of the gate's debug listener from its log.
func debugAddr(t *testing.T, g *gateProc) string {
	t.Helper()
	for _, line := range strings.Split(g.Log(), "\n") {
		var rec struct{ Msg, Debug string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "modgate debug listener" {
			return rec.Debug
		}
	}
	t.Fatalf("no debug listener in the log:\n%s", g.Log())
	return ""
}

// TestEgressRefusesUnspecifiedAddresses runs the real binary with every
// range allowed and egress allowed by default, and checks that no spelling
// of the unspecified address reaches the gate's own listeners (proxy,
// admin, debug), by CONNECT (the HTTPS_PROXY path) or by a plain http://
// proxy request, while an ordinary tunnel still works.
func TestEgressRefusesUnspecifiedAddresses(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("rules: []\negress:\n  default: allow\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, g := fakeGate(t, filepath.Join(dir, "data"), "--policy", policyFile,
		"--allow-range", "0.0.0.0/0,::/0", "--debug-listen", "127.0.0.1:0")
	ports := map[string]string{"proxy": g.listen, "admin": g.admin, "debug": debugAddr(t, g)}
	for name, addr := range ports {
		_, port, _ := net.SplitHostPort(addr)
		for _, host := range []string{"0.0.0.0", "0.1.2.3", "[::]", "[::ffff:0.0.0.0]", "[::ffff:0.0.0.7]", "[0:0:0:0:0:0:0:0]"} {
			target := host + ":" + port
			t.Run("CONNECT "+name+" "+target, func(t *testing.T) {
				status, body, _ := rawConnect(t, g, target)
				if status != http.StatusForbidden || !strings.Contains(body, "unspecified") {
					t.Errorf("CONNECT %s (the %s listener): %d %q, want 403 naming the unspecified address", target, name, status, body)
				}
			})
		}
	}
	proxyURL := &url.URL{Scheme: "http", Host: g.listen}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 20 * time.Second}
	_, adminPort, _ := net.SplitHostPort(g.admin)
	_, debugPort, _ := net.SplitHostPort(ports["debug"])
	for _, u := range []string{
		"http://0.0.0.0:" + adminPort + "/metrics",
		"http://[::]:" + adminPort + "/api/v1/policy",
		"http://[::ffff:0.0.0.0]:" + debugPort + "/debug/pprof/cmdline",
	} {
		t.Run("GET "+u, func(t *testing.T) {
			resp, err := client.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "unspecified") {
				t.Errorf("GET %s through the proxy: %d %q, want 403 naming the unspecified address", u, resp.StatusCode, body)
			}
		})
	}

	// The go command itself, pointed at the gate's own ports through the
	// proxy: a plain http:// GOPROXY (HTTP_PROXY) and an https:// one
	// (HTTPS_PROXY, CONNECT).
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.env = append(c.env, "GOPROXY=http://0.0.0.0:"+adminPort, "HTTP_PROXY=http://"+g.listen, "GOSUMDB=off")
	if out, err := c.run("mod", "download", "-json", "example.com/dep@v1.0.0"); err == nil || !strings.Contains(out, "unspecified") {
		t.Errorf("go mod download with GOPROXY=http://0.0.0.0:<admin port> through the gate: err=%v, want the gate's 403:\n%s", err, out)
	}
	_, proxyPort, _ := net.SplitHostPort(g.listen)
	c.env = append(c.env, "GOPROXY=https://0.0.0.0:"+proxyPort)
	if out, err := c.run("mod", "download", "-json", "example.com/dep@v1.0.0"); err == nil || !strings.Contains(out, "Forbidden") {
		t.Errorf("go mod download with GOPROXY=https://0.0.0.0:<proxy port> through the gate: err=%v, want a refused CONNECT:\n%s", err, out)
	}
	waitFor(t, g, `"msg":"connect"`, `"decision":"refuse"`, `"host":"0.0.0.0"`, `"port":`+proxyPort)

	// The ranges really are open: an echo server on loopback is tunnelled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	if status, _, _ := rawConnectStatus(t, g, ln.Addr().String()); status != http.StatusOK {
		t.Errorf("CONNECT %s (an echo server in an allowed range): %d, want 200", ln.Addr(), status)
	}
}

// rawConnectStatus sends CONNECT target and returns the status line's code
// without reading a body (a tunnel has none).
func rawConnectStatus(t *testing.T, g *gateProc, target string) (int, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", g.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 12)
	var code int
	fmt.Sscanf(string(buf[:n]), "HTTP/1.1 %d", &code)
	return code, string(buf[:n]), err
}
