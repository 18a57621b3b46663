package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/fakeupstream"
)

// appMod requires several test modules (lib v1.2.0 brings dep along).
const appMod = `module example.com/app

go 1.21

require (
	example.com/lib v1.2.0
	example.com/Upper v1.0.0
	example.com/bad v1.2.0
	example.com/dep v1.0.0 // indirect
)
`

// appDownload names every module of appMod's build list.
var appDownload = []string{"mod", "download", "example.com/lib@v1.2.0", "example.com/dep@v1.0.0", "example.com/Upper@v1.0.0", "example.com/bad@v1.2.0"}

// fakeGate starts a fake upstream and a gate in front of it.
func fakeGate(t *testing.T, dataDir string, args ...string) (*fakeupstream.Server, *gateProc) {
	t.Helper()
	up := fakeupstream.Start(t, fakeupstream.Options{})
	return up, startGate(t, dataDir, append([]string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey()}, args...)...)
}

// checkGoSum checks that go.sum has exactly the upstream's lines for the
// modules it names.
func checkGoSum(t *testing.T, up *fakeupstream.Server, c *goClient) {
	t.Helper()
	sum := string(c.file("app/go.sum"))
	n := 0
	for _, m := range up.Modules() {
		zipH1, modH1 := up.GoSum(m)
		if strings.Contains(sum, m.Path+" "+m.Version+" ") {
			n++
			if !strings.Contains(sum, m.Path+" "+m.Version+" "+zipH1+"\n") || !strings.Contains(sum, m.Path+" "+m.Version+"/go.mod "+modH1+"\n") {
				t.Errorf("go.sum lines for %v differ from the upstream's:\n%s", m, sum)
			}
		}
	}
	if n < 4 {
		t.Errorf("go.sum names %d modules, want at least 4:\n%s", n, sum)
	}
}

// checkCoSigned checks that the tree note the go command stored verifies
// with both the upstream and the enterprise key.
func checkCoSigned(t *testing.T, c *goClient, keys ...string) {
	t.Helper()
	msg := c.file("gopath/pkg/sumdb/sum.golang.org/latest")
	if got := strings.Count(string(msg), "\n— sum.golang.org "); got != 2 {
		t.Errorf("stored tree note has %d signatures, want 2:\n%s", got, msg)
	}
	for _, k := range keys {
		v, err := note.NewVerifier(k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Errorf("stored tree note does not verify with %s: %v", k, err)
		}
	}
}

// TestEndToEnd drives the real go command through the gate: intercepted
// and as GOPROXY, empty and complete go.sum, then offline from the cache.
func TestEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)

	a := newClient(t, g, viaIntercept, g.verifier, appMod)
	a.must(appDownload...)
	a.must("mod", "verify")
	checkGoSum(t, up, a)
	checkCoSigned(t, a, g.verifier, up.VerifierKey())
	goSum := a.file("app/go.sum")

	withSum := func(c *goClient) *goClient {
		if err := os.WriteFile(filepath.Join(c.dir, "go.sum"), goSum, 0o644); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		mode    clientMode
		gosumdb string
		sum     bool
	}{
		{"intercept, complete go.sum", viaIntercept, g.verifier, true},
		{"GOPROXY endpoint, empty go.sum", viaGOPROXY, g.verifier, false},
		{"intercept, default upstream key", viaIntercept, up.VerifierKey(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, g, tc.mode, tc.gosumdb, appMod)
			if tc.sum {
				withSum(c)
			}
			c.must(appDownload...)
			c.must("mod", "verify")
			checkGoSum(t, up, c)
		})
	}

	g.stop()
	up.ResetCounts()
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--offline")
	for _, tc := range []struct {
		name string
		mode clientMode
		sum  bool
	}{
		{"offline, intercept, empty go.sum", viaIntercept, false},
		{"offline, intercept, complete go.sum", viaIntercept, true},
		{"offline, GOPROXY endpoint", viaGOPROXY, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, g, tc.mode, g.verifier, appMod)
			if tc.sum {
				withSum(c)
			}
			c.must(appDownload...)
			c.must("mod", "verify")
			if !tc.sum { // with a complete go.sum, go asks no checksum database
				checkCoSigned(t, c, g.verifier, up.VerifierKey())
			}
		})
	}
	if log := up.RequestLog(); len(log) > 0 {
		t.Errorf("offline gate reached the upstream: %q", log)
	}
	c := newClient(t, g, viaIntercept, g.verifier, appMod)
	out, err := c.run("mod", "download", "example.com/lib@v1.0.0")
	if err == nil || !strings.Contains(out, "504") || !strings.Contains(out, "modgate: example.com/lib@v1.0.0: not in the cache") {
		t.Errorf("offline miss: err=%v, want 504 with modgate's message:\n%s", err, out)
	}
}

// TestZipMismatch checks that a zip that differs from its checksum record
// is refused with modgate's message and never cached.
func TestZipMismatch(t *testing.T) {
	up, g := fakeGate(t, filepath.Join(t.TempDir(), "data"))
	bad := module.Version{Path: "example.com/lib", Version: "v1.1.0"}
	up.SetZipMismatch(bad, true)
	c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	out, err := c.run("mod", "download", "example.com/lib@v1.1.0")
	if err == nil {
		t.Fatalf("go mod download of a tampered zip succeeded:\n%s", out)
	}
	for _, want := range []string{"502", "modgate: verification failed", "example.com/lib@v1.1.0", "checksum database"} {
		if !strings.Contains(out, want) {
			t.Errorf("go output lacks %q:\n%s", want, out)
		}
	}
	zipPath := "/example.com/lib/@v/v1.1.0.zip"
	before := up.Requests(zipPath)
	up.SetZipMismatch(bad, false)
	c = newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", "example.com/lib@v1.1.0")
	c.must("mod", "verify")
	if up.Requests(zipPath) != before+1 {
		t.Errorf("the refused zip was served from the cache: upstream zip requests %d -> %d", before, up.Requests(zipPath))
	}
}

// TestFork checks that a fork of the checksum database is refused, kept as
// evidence and fails closed across a restart.
func TestFork(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)
	c := newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	c.must("mod", "download", "example.com/dep@v1.0.0")

	up.Fork()
	c = newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	out, err := c.run("mod", "download", "example.com/lib@v1.0.0")
	if err == nil {
		t.Fatalf("download after a fork succeeded:\n%s", out)
	}
	if !strings.Contains(out, "modgate: checksum database fork detected") {
		t.Errorf("go output lacks modgate's fork message:\n%s", out)
	}
	if !g.logged("fork detected") {
		t.Errorf("modgate did not log the fork:\n%s", g.Log())
	}
	g.stop()

	st, err := cache.Open(context.Background(), cache.Config{Dir: filepath.Join(dataDir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	var evidence []string
	st.Scan(context.Background(), "witness/sum.golang.org/evidence/", func(key string, e cache.Entry) error {
		evidence = append(evidence, string(e.Value))
		return nil
	})
	st.Close()
	if len(evidence) != 1 || !strings.Contains(evidence[0], "older_note") || !strings.Contains(evidence[0], "newer_note") {
		t.Fatalf("fork evidence = %q, want one record with both notes", evidence)
	}

	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	c = newClient(t, g, viaIntercept, g.verifier, "module example.com/app\n\ngo 1.21\n")
	if out, err := c.run("mod", "download", "example.com/dep@v1.0.0"); err == nil || !strings.Contains(out, "fork detected") {
		t.Errorf("after a restart the gate did not fail closed: err=%v\n%s", err, out)
	}
}
