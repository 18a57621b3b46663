package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/proxy"
	"github.com/modgate/modgate/signer"
)

// publishBackdated adds example.com/backdated@version to the fake upstream,
// with an .info that claims infoTime; its record is appended at once.
func publishBackdated(t *testing.T, up *fakeupstream.Server, version, infoTime string) {
	t.Helper()
	archive := fmt.Sprintf("-- .mod --\nmodule example.com/backdated\n\ngo 1.21\n-- .info --\n{\"Version\":%q,\"Time\":%q}\n"+
		"-- go.mod --\nmodule example.com/backdated\n\ngo 1.21\n-- b.go --\npackage backdated\n\nconst Version = %q\n", version, infoTime, version)
	if _, err := up.AddArchive("example.com_backdated_"+version+".txt", []byte(archive)); err != nil {
		t.Fatal(err)
	}
}

// witnessHistory reads the witness history with `modgate witness status
// --json` from the running gate g, or from the stopped gate's cache in
// dataDir when g is nil.
func witnessHistory(t *testing.T, g *gateProc, dataDir string) *signer.HistoryStatus {
	t.Helper()
	if g == nil {
		st, err := cache.Open(context.Background(), cache.Config{Dir: filepath.Join(dataDir, "cache")})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		status, err := signer.ReadStatus(context.Background(), proxy.WitnessStore{Cache: st}, "sum.golang.org")
		if err != nil {
			t.Fatal(err)
		}
		return status.History
	}
	out, code := adminCLI(t, g, "witness", "status", "--json")
	var st signer.Status
	if i := strings.Index(out, "{"); i < 0 {
		t.Fatalf("witness status (exit %d): no JSON:\n%s", code, out)
	} else if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(&st); err != nil { // exit 1 adds a line while forked
		t.Fatalf("witness status (exit %d): %v\n%s", code, err, out)
	}
	return st.History
}

// waitHistory waits until the running gate's history reaches size.
func waitHistory(t *testing.T, g *gateProc, size int64) *signer.HistoryStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if h := witnessHistory(t, g, ""); h != nil && h.Latest.Size == size {
			return h
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the witness history did not reach size %d: %+v\n%s", size, witnessHistory(t, g, ""), g.Log())
	return nil
}

// TestCooldownBackdatedEndToEnd drives the real go command through the
// real gate: a version whose .info is backdated but whose record was
// appended after the gate's first witnessed tree head is refused by the
// cooldown, through interception and through the GOPROXY endpoint, naming
// both times; @latest resolves to the version that is really past the
// cooldown; polling moves the history with no client traffic; a restart
// keeps it; a fork neither moves nor rewrites it.
func TestCooldownBackdatedEndToEnd(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{})
	publishBackdated(t, up, "v1.0.0", "2019-01-01T00:00:00Z") // before the gate's first witness
	dataDir := filepath.Join(t.TempDir(), "data")
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("cooldown: 72h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--policy", policyFile, "--witness-interval", "200ms"}
	g := startGate(t, dataDir, args...)
	first := waitHistory(t, g, up.TreeSize()) // the poll at start

	publishBackdated(t, up, "v1.1.0", "2019-01-01T00:00:00Z")
	moved := waitHistory(t, g, up.TreeSize()) // no client asked
	if moved.First.Size != first.First.Size || !moved.First.Time.Equal(first.First.Time) || !moved.Latest.Time.After(first.Latest.Time) {
		t.Fatalf("polling: history %+v after %+v; want the same first entry and a later one", moved, first)
	}
	stamp := moved.Latest.Time.UTC().Format(time.RFC3339)

	for _, mode := range []clientMode{viaIntercept, viaGOPROXY} {
		c := newClient(t, g, mode, g.verifier, emptyMod)
		out, err := c.run("get", "example.com/backdated@v1.1.0")
		for _, want := range []string{"403", "denied by policy rule cooldown: first seen in the checksum database", stamp, "its .info claims 2019-01-01T00:00:00Z"} {
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("mode %d: go get of the backdated version: err=%v, want %q in:\n%s", mode, err, want, out)
			}
		}
	}
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("get", "example.com/backdated@latest")
	if mod := string(c.file("app/go.mod")); !strings.Contains(mod, "example.com/backdated v1.0.0") {
		t.Errorf("go get @latest under a backdated newest version chose:\n%s", mod)
	}

	out, code := policyCLI(t, g, "test", "example.com/backdated@v1.1.0")
	for _, want := range []string{"denied", "2019-01-01T00:00:00Z (what its .info claims)", stamp + " (record "} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("modgate policy test: exit %d, want 1 and %q in:\n%s", code, want, out)
		}
	}
	out, _ = policyCLI(t, g, "test", "example.com/backdated@v1.0.0")
	if !strings.Contains(out, "before this gate's first witnessed tree head") {
		t.Errorf("modgate policy test of a version older than the first witness:\n%s", out)
	}

	// A restart keeps the history: the version is dated as before, not at the restart.
	g.stop()
	if h := witnessHistory(t, nil, dataDir); h == nil || h.First.Size != moved.First.Size || !h.First.Time.Equal(moved.First.Time) ||
		h.Latest.Size != moved.Latest.Size || !h.Latest.Time.Equal(moved.Latest.Time) {
		t.Errorf("stopped gate's history %+v, want %+v", h, moved)
	}
	g = startGate(t, dataDir, args...)
	if out, err := goGet(t, g, "example.com/backdated@v1.1.0"); err == nil || !strings.Contains(out, stamp) {
		t.Errorf("after a restart: err=%v, want the refusal dated %s:\n%s", err, stamp, out)
	}

	// A fork neither moves nor rewrites the history.
	before := witnessHistory(t, g, "")
	up.Fork()
	waitFor(t, g, "fork detected")
	time.Sleep(500 * time.Millisecond) // more polls
	after := witnessHistory(t, g, "")
	if after.Latest.Size != before.Latest.Size || !after.Latest.Time.Equal(before.Latest.Time) || after.Entries != before.Entries || !after.First.Time.Equal(before.First.Time) {
		t.Errorf("history after a fork %+v, want %+v", after, before)
	}
}

// TestOfflineCooldownEveryPolicyFeature checks that an offline gate with
// every policy feature on serves what it has: a fact it cannot establish
// fails no request (issue 18).
func TestOfflineCooldownEveryPolicyFeature(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("get", "example.com/lib@v1.1.0")
	g.stop()

	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	every := "mode: enforce\ndefault: allow\ndeny_retracted: true\ncooldown: 72h\nprivate:\n  - corp.example.com/*\n" +
		"rules:\n  - id: bad\n    action: deny\n    module: example.com/bad\n    versions: <v1.2.0\n    reason: CVE-2099-0001\n" +
		"  - id: corp\n    action: allow\n    module: corp.example.com/*\n"
	if err := os.WriteFile(policyFile, []byte(every), 0o644); err != nil {
		t.Fatal(err)
	}
	up.ResetCounts()
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--offline", "--policy", policyFile)
	status, body := httpGet(t, "http://"+g.listen+"/example.com/lib/@v/list")
	if status != 200 || !strings.Contains(body, "v1.1.0") {
		t.Errorf("offline list with a cooldown: %d %q, want 200", status, body)
	}
	c = newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("get", "example.com/lib@v1.1.0")
	c = newClient(t, g, viaGOPROXY, g.verifier, emptyMod)
	c.must("get", "example.com/lib@v1.1.0")
	if out, err := c.run("get", "example.com/lib@v1.0.0"); err == nil || !strings.Contains(out, "not in the cache") || strings.Contains(out, "publication time") {
		t.Errorf("offline miss: err=%v, want 504 for the object itself:\n%s", err, out)
	}
	if log := up.RequestLog(); len(log) > 0 {
		t.Errorf("the offline gate reached the upstream: %q", log)
	}
}

// httpGet GETs url and returns the status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
