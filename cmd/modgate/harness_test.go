package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the modgate binary the end-to-end tests run, built by TestMain.
var binary string

// clientHome is the HOME of every go client, with telemetry off: the go
// command may leave a telemetry process writing below HOME after it exits,
// which must not race with the removal of a test's temporary directory.
var clientHome string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "modgate")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building modgate:", err)
		os.Exit(1)
	}
	clientHome = filepath.Join(dir, "home")
	off := exec.Command("go", "telemetry", "off")
	off.Env = append(os.Environ(), "HOME="+clientHome, "XDG_CONFIG_HOME="+filepath.Join(clientHome, ".config"))
	if out, err := off.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go telemetry off: %v\n%s", err, out)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// gateProc is a running modgate serve.
type gateProc struct {
	t         *testing.T
	dataDir   string
	listen    string // host:port of the proxy listener
	admin     string // host:port of the admin listener
	tlsListen string // host:port of the HTTPS GOPROXY listener, if any
	cmd       *exec.Cmd
	mu        sync.Mutex
	log       strings.Builder
	done      chan struct{}
	verifier  string // the enterprise verifier key
}

// startGate runs modgate serve on free loopback ports with dataDir and
// extra flags, and waits until /readyz answers 200.
func startGate(t *testing.T, dataDir string, args ...string) *gateProc {
	t.Helper()
	g := &gateProc{t: t, dataDir: dataDir, done: make(chan struct{})}
	all := append([]string{"serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, args...)
	g.cmd = exec.Command(binary, all...)
	g.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+t.TempDir())
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [3]string, 1)
	go g.readLog(stderr, addrs)
	t.Cleanup(g.stop)
	select {
	case a := <-addrs:
		g.listen, g.admin, g.tlsListen = a[0], a[1], a[2]
	case <-g.done:
		t.Fatalf("modgate exited before serving:\n%s", g.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("modgate did not start in 30s:\n%s", g.Log())
	}
	g.waitReady()
	out, err := exec.Command(binary, "key", "verifier", "--data-dir", dataDir).Output()
	if err != nil {
		t.Fatalf("modgate key verifier: %v", err)
	}
	g.verifier = strings.TrimSpace(string(out))
	return g
}

// readLog collects stderr and reports the listen addresses from the
// "modgate serving" line.
func (g *gateProc) readLog(r io.Reader, addrs chan<- [3]string) {
	defer close(g.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		g.mu.Lock()
		g.log.WriteString(line + "\n")
		g.mu.Unlock()
		var rec struct {
			Msg, Listen, Admin string
			TLSListen          string `json:"tls_listen"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "modgate serving" {
			addrs <- [3]string{rec.Listen, rec.Admin, rec.TLSListen}
		}
	}
	g.cmd.Wait()
}

func (g *gateProc) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("modgate not ready:\n%s", g.Log())
}

// logged reports whether modgate's log holds substr, waiting up to 5 s:
// info lines reach the log through a buffer flushed every
// --log-flush-interval (200ms by default), after the request they record.
func (g *gateProc) logged(substr string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.Log(), substr) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Log returns what modgate printed so far.
func (g *gateProc) Log() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// stop ends modgate with SIGTERM and waits for it.
func (g *gateProc) stop() {
	if g.cmd.Process == nil {
		return
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
	}
}

// goClient is a fresh go command environment pointed at a gate.
type goClient struct {
	t   *testing.T
	dir string // the main module
	env []string
}

// clientMode says how a client reaches the gate.
type clientMode int

const (
	viaIntercept clientMode = iota // HTTPS_PROXY + GOPROXY=https://proxy.golang.org
	viaGOPROXY                     // GOPROXY=http://<gate>
)

// newClient makes a client with empty GOPATH and GOMODCACHE whose main
// module has goMod, trusting the gate's CA and verifying with gosumdb.
func newClient(t *testing.T, g *gateProc, mode clientMode, gosumdb, goMod string) *goClient {
	t.Helper()
	root := t.TempDir()
	c := &goClient{t: t, dir: filepath.Join(root, "app")}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	c.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + clientHome, "XDG_CONFIG_HOME=" + filepath.Join(clientHome, ".config"),
		"GOPATH=" + filepath.Join(root, "gopath"), "GOMODCACHE=" + filepath.Join(root, "modcache"),
		"GOCACHE=" + filepath.Join(root, "gocache"), "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local",
		"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=", "NO_PROXY=", "no_proxy=",
		"GOSUMDB=" + gosumdb, "SSL_CERT_FILE=" + filepath.Join(g.dataDir, "ca.pem"), "SSL_CERT_DIR=" + root,
	}
	switch mode {
	case viaIntercept:
		c.env = append(c.env, "GOPROXY=https://proxy.golang.org", "HTTPS_PROXY=http://"+g.listen)
	case viaGOPROXY:
		c.env = append(c.env, "GOPROXY=http://"+g.listen, "HTTPS_PROXY=")
	}
	return c
}

// run runs the go command in the client's main module.
func (c *goClient) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = c.dir
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs the go command and fails the test if it fails.
func (c *goClient) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// file reads a file below the client's root (GOPATH is root/gopath).
func (c *goClient) file(rel string) []byte {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(c.dir), rel))
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}
