package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// appGoSum is a real-looking go.sum for appMod, from the fake upstream.
func appGoSum(t *testing.T, up *fakeupstream.Server, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, m := range up.Modules() {
		switch m.Path + "@" + m.Version {
		case "example.com/lib@v1.2.0", "example.com/dep@v1.0.0", "example.com/Upper@v1.0.0", "example.com/bad@v1.2.0":
			zipH1, modH1 := up.GoSum(m)
			b.WriteString(m.Path + " " + m.Version + " " + zipH1 + "\n")
			b.WriteString(m.Path + " " + m.Version + "/go.mod " + modH1 + "\n")
		}
	}
	name := filepath.Join(dir, "go.sum")
	if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// unreachable returns a loopback URL where nothing listens.
func unreachable(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// airGapped starts a gate with its own data directory, --offline and the
// upstream unreachable, that knows only the upstream's key.
func airGapped(t *testing.T, up *fakeupstream.Server) *gateProc {
	t.Helper()
	return startGate(t, filepath.Join(t.TempDir(), "inside"), "--upstream", unreachable(t),
		"--upstream-sumdb", up.VerifierKey(), "--offline")
}

// bundleCLI runs a bundle command against gate g and fails the test if
// the exit code is not want.
func bundleCLI(t *testing.T, g *gateProc, want int, args ...string) string {
	t.Helper()
	if g != nil {
		args = append(args, "--admin", "http://"+g.admin, "--data-dir", g.dataDir)
	}
	out, code := runCLI(t, append([]string{"bundle"}, args...)...)
	if code != want {
		t.Fatalf("modgate bundle %s: exit %d, want %d:\n%s", strings.Join(args, " "), code, want, out)
	}
	return out
}

// TestBundleRoundTrip exports a go.sum's modules from one gate and imports
// them into an air-gapped one, which then serves a fresh go client through
// interception and as GOPROXY, with GOSUMDB pinned to its enterprise key.
func TestBundleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	file := filepath.Join(dir, "app.tar.zst")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-sum", appGoSum(t, up, dir))
	if got := bundleCLI(t, nil, 0, "verify", file, "--upstream-sumdb", up.VerifierKey(), "--trust", out.verifier); !strings.Contains(got, "ok: 4 module versions") {
		t.Errorf("verify: %s", got)
	}
	if got := bundleCLI(t, nil, 0, "ls", file); !strings.Contains(got, "example.com/Upper") {
		t.Errorf("ls: %s", got)
	}

	in := airGapped(t, up)
	// Signed by the outside gate's key, which the inside gate does not know.
	if got := bundleCLI(t, in, 1, "import", file); !strings.Contains(got, "not signed by") {
		t.Errorf("import without --trust: %s", got)
	}
	bundleCLI(t, in, 0, "import", file, "--trust", out.verifier)
	bundleCLI(t, in, 0, "import", file, "--trust", out.verifier) // twice is harmless
	for _, mode := range []clientMode{viaIntercept, viaGOPROXY} {
		c := newClient(t, in, mode, in.verifier, appMod)
		c.must(appDownload...)
		c.must("mod", "verify")
		checkGoSum(t, up, c)
		checkCoSigned(t, c, in.verifier, up.VerifierKey())
	}
	status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@v/v1.0.0.info")
	if status != http.StatusGatewayTimeout || !strings.HasPrefix(body, "modgate: example.com/lib@v1.0.0 is not in this air-gapped cache") {
		t.Errorf("a module not imported: %d %q", status, body)
	}
	if status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@v/list"); status != 200 || body != "v1.2.0\n" {
		t.Errorf("list: %d %q, want the imported version", status, body)
	}
	if status, body := httpGet(t, "http://"+in.listen+"/example.com/lib/@latest"); status != 200 || !strings.Contains(body, `"v1.2.0"`) {
		t.Errorf("@latest: %d %q", status, body)
	}
}

// TestBundleTampered imports bundles that must be refused, each with
// nothing imported.
func TestBundleTampered(t *testing.T) {
	dir := t.TempDir()
	up, out := fakeGate(t, filepath.Join(dir, "outside"))
	file := filepath.Join(dir, "app.tar")
	bundleCLI(t, out, 0, "export", "-o", file, "--go-sum", appGoSum(t, up, dir))
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	i := bytes.Index(flipped, []byte("PK\x03\x04"))
	if i < 0 {
		t.Fatal("no zip in the bundle (is it compressed?)")
	}
	flipped[i+100] ^= 1
	in := airGapped(t, up)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"a byte flipped in a zip", "has SHA-256", flipped},
		{"truncated", "truncated", good[:len(good)*2/3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.tar")
			os.WriteFile(bad, tc.data, 0o644)
			if got := bundleCLI(t, in, 1, "import", bad, "--trust", out.verifier); !strings.Contains(got, tc.want) {
				t.Errorf("import: %s, want %q", got, tc.want)
			}
			if status, _ := httpGet(t, "http://"+in.listen+"/example.com/dep/@v/v1.0.0.mod"); status != http.StatusGatewayTimeout {
				t.Errorf("after a refused import, a module is served: %d", status)
			}
		})
	}
}
