package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRefusalsAreSeen runs the binary and checks that refusals reach the
// operator: an egress refusal answers 403 naming the rule and is logged at
// warn level with the rule and a hint; a client that rejects the gate's
// certificate is logged once per client address, at warn level, with the
// fix.
func TestRefusalsAreSeen(t *testing.T) {
	_, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	status, body, _ := rawConnect(t, g, "github.com:443")
	if status != 403 || !strings.Contains(body, "egress rule default") {
		t.Errorf("CONNECT github.com:443: %d %q, want 403 naming the rule", status, body)
	}
	waitFor(t, g, `"level":"warn"`, `"msg":"connect"`, `"host":"github.com"`, `"rule":"default"`, `"decision":"refuse"`, `"hint":"to allow it, add an egress rule`)

	for range 3 { // a go client without the gate's CA, three times
		if err := tlsWithoutCA(g.listen); err == nil {
			t.Fatal("a client without the CA accepted the gate's certificate")
		}
	}
	waitFor(t, g, `"level":"warn"`, `"msg":"client rejected the gate's certificate"`, `"host":"proxy.golang.org"`, `modgate doctor`)
	time.Sleep(200 * time.Millisecond)
	if n := strings.Count(g.Log(), "client rejected the gate's certificate"); n != 1 {
		t.Errorf("%d log lines for one client rejecting the certificate 3 times, want 1:\n%s", n, g.Log())
	}
	if strings.Contains(g.Log(), "TLS handshake error") {
		t.Errorf("net/http still logs the handshake error:\n%s", g.Log())
	}
}

// tlsWithoutCA connects through the gate to proxy.golang.org as a client
// that trusts no roots, and returns the handshake's error.
func tlsWithoutCA(gate string) error {
	c, err := net.Dial("tcp", gate)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT proxy.golang.org:443 HTTP/1.1\r\nHost: proxy.golang.org:443\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		return fmt.Errorf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "proxy.golang.org", RootCAs: x509.NewCertPool()})
	return tc.HandshakeContext(context.Background())
}

// TestProgressCountsEgressRefusals runs serve on a terminal (through
// script(1), which gives it a pseudo-terminal) and checks that an egress
// refusal is counted in the progress line and shown as a warning.
func TestProgressCountsEgressRefusals(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) is not installed; it gives serve a terminal")
	}
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "other")) // for the fake upstream's key only
	g.stop()
	dir := filepath.Join(t.TempDir(), "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	line := strings.Join([]string{quoteSh(binary), "serve", "--data-dir", quoteSh(dir), "--listen", addr, "--admin-listen", "127.0.0.1:0",
		"--upstream", quoteSh(up.URL), "--upstream-sumdb", quoteSh(up.VerifierKey())}, " ")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, script, "-qfec", line, "/dev/null")
	cmd.Env = append(os.Environ(), "TERM=dumb")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	wait := func(what string, d time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if strings.Contains(out.String(), what) {
				return
			}
		}
		t.Fatalf("no %q on the terminal:\n%s", what, out.String())
	}
	wait("modgate: serving on", 30*time.Second)
	status, _, _ := rawConnect(t, &gateProc{t: t, listen: addr}, "github.com:443")
	if status != 403 {
		t.Fatalf("CONNECT github.com:443: %d", status)
	}
	wait("\twarn\tegress\tconnect", 10*time.Second)
	wait("0 requests, 0% from the cache, 0 B served, 1 refused", 15*time.Second)
}

// lockedBuffer is a strings.Builder safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
