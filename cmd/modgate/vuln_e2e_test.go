package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/proxy"
)

// govulncheckBinary is the govulncheck pinned with go.mod's tool
// directive, built by "go tool -n" (offline: from the module cache) with
// the repository's environment, so that it can then run with a client's.
func govulncheckBinary(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "tool", "-n", "govulncheck")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool -n govulncheck: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// waitVulnVersion waits until the gate's database is built from version.
func waitVulnVersion(t *testing.T, g *gateProc, version string) proxy.VulnStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var st proxy.VulnStatus
	for time.Now().Before(deadline) {
		out, code := adminCLI(t, g, "vuln", "status", "--json")
		if code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.DB != nil && st.DB.Source.Version == version {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the gate did not build the vulnerability database of %s: %+v\n%s", version, st, g.Log())
	return st
}

// waitVulnFailure waits until a refresh has failed with an error holding
// reason, and checks that the database of version stays in force.
func waitVulnFailure(t *testing.T, g *gateProc, version, reason string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st proxy.VulnStatus
		out, _ := adminCLI(t, g, "vuln", "status", "--json")
		if json.Unmarshal([]byte(out), &st) == nil && st.LastOutcome == "failed" && strings.Contains(st.LastError, reason) {
			if st.DB == nil || st.DB.Source.Version != version {
				t.Errorf("after a failed refresh the database is not %s's: %+v", version, st)
			}
			text, _ := adminCLI(t, g, "vuln", "status")
			if !strings.Contains(text, "failed") || !strings.Contains(text, version) {
				t.Errorf("vuln status after a failed refresh:\n%s", text)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no refresh failed with %q: %s\n%s", reason, out, g.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// vulnProgram is a main module that calls the vulnerable lib.Hello.
const vulnProgram = `package main

import (
	"fmt"

	"example.com/lib"
)

func main() { fmt.Println(lib.Hello()) }
`

func TestVulnEndToEnd(t *testing.T) {
	up := fakeupstream.Start(t, fakeupstream.Options{})
	t1 := time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
	v1, err := up.AddVulnDB(t1, fakeupstream.VulnDBEntries())
	if err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	g := startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(),
		"--vuln-refresh", "1s", "--list-ttl", "1s")
	st := waitVulnVersion(t, g, v1.Version)
	if st.DB.Entries != 4 || st.DB.Skipped != 1 || !st.DB.Source.Time.Equal(t1) {
		t.Errorf("status: %d entries, %d skipped, time %v; want 4, 1 and %v", st.DB.Entries, st.DB.Skipped,
			st.DB.Source.Time, t1)
	}
	text, _ := adminCLI(t, g, "vuln", "status")
	for _, want := range []string{v1.Version, t1.Format(time.RFC3339), "entries:       4", "skipped:       1",
		fakeupstream.VulnMalformed} {
		if !strings.Contains(text, want) {
			t.Errorf("vuln status lacks %q:\n%s", want, text)
		}
	}

	// Report mode (the default action): the affected version goes through, audited.
	editPolicy(t, g, "mode: enforce\nrules: []\nvulnerable:\n  action: report\n", true)
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	if err := os.WriteFile(filepath.Join(c.dir, "main.go"), []byte(vulnProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("get", "example.com/lib@v1.0.0")
	if log := mustPolicy(t, g, "log", "--json"); !strings.Contains(log, "would_deny") ||
		!strings.Contains(log, fakeupstream.VulnLib) || !strings.Contains(log, "example.com/lib@v1.0.0") {
		t.Errorf("report mode did not audit the affected version:\n%s", log)
	}
	out, _ := policyCLI(t, g, "test", "example.com/lib@v1.0.0")
	if !strings.Contains(out, "vulnerable") || !strings.Contains(out, fakeupstream.VulnLib) {
		t.Errorf("policy test shows no vulnerability decision:\n%s", out)
	}

	// modgate vuln check reads the go.sum and exits 1.
	out, code := adminCLI(t, g, "vuln", "check", filepath.Join(c.dir, "go.sum"))
	if code != 1 || !strings.Contains(out, "example.com/lib@v1.0.0: "+fakeupstream.VulnLib+" (fixed in v1.1.0)") {
		t.Errorf("vuln check: exit %d:\n%s", code, out)
	}

	// govulncheck, unmodified, through the interception of vuln.go.dev and through -db.
	bin := govulncheckBinary(t)
	runVulncheck := func(env []string, args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append(args, "-C", c.dir, "./...")...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Errorf("govulncheck %v: %v, want exit 3 (vulnerabilities found):\n%s", args, err, out)
		}
		return string(out)
	}
	for name, out := range map[string]string{
		"intercept": runVulncheck(c.env),
		"-db":       runVulncheck(append(c.env, "HTTPS_PROXY="), "-db", "http://"+g.listen+"/vuln"),
	} {
		if !strings.Contains(out, fakeupstream.VulnLib) || strings.Contains(out, fakeupstream.VulnWithdrawn) {
			t.Errorf("govulncheck via %s does not report %s (alone):\n%s", name, fakeupstream.VulnLib, out)
		}
	}
	if !g.logged(`"host":"vuln.go.dev"`) {
		t.Errorf("no request to the intercepted vuln.go.dev in the log")
	}

	// Deny: the affected version is refused with the IDs, the fixed one is served.
	editPolicy(t, g, "mode: enforce\nrules: []\nvulnerable:\n  action: deny\n", true)
	out, err = goGet(t, g, "example.com/lib@v1.0.0")
	want := "example.com/lib@v1.0.0 denied: affected by " + fakeupstream.VulnLib + "; fixed in v1.1.0"
	if err == nil || !strings.Contains(out, want) || !strings.Contains(out, "403") {
		t.Errorf("go get of an affected version in deny mode: err=%v, want 403 and %q:\n%s", err, want, out)
	}
	if out, err := goGet(t, g, "example.com/lib@v1.1.0"); err != nil {
		t.Errorf("go get of the fixed version: %v\n%s", err, out)
	}
	// reviewed_only leaves the UNREVIEWED entry out; the ignore list its ID.
	if out, err := goGet(t, g, "example.com/bad@v1.1.0"); err == nil || !strings.Contains(out, fakeupstream.VulnUnreviewed) {
		t.Errorf("go get of a version an unreviewed entry affects: err=%v\n%s", err, out)
	}
	editPolicy(t, g, "mode: enforce\nrules: []\nvulnerable:\n  action: deny\n  reviewed_only: true\n", true)
	if out, err := goGet(t, g, "example.com/bad@v1.1.0"); err != nil {
		t.Errorf("reviewed_only: %v\n%s", err, out)
	}

	// Refresh: a newer version replaces the database without a restart.
	entries := fakeupstream.VulnDBEntries()
	entries["GO-2099-0006.json"] = []byte(strings.ReplaceAll(string(entries[fakeupstream.VulnLib+".json"]),
		fakeupstream.VulnLib, "GO-2099-0006"))
	v2, err := up.AddVulnDB(t1.Add(24*time.Hour), entries)
	if err != nil {
		t.Fatal(err)
	}
	if st := waitVulnVersion(t, g, v2.Version); st.DB.Entries != 5 {
		t.Errorf("after the refresh: %d entries, want 5", st.DB.Entries)
	}
	// A refresh that fails keeps it: a newer version whose zip differs from
	// the checksum database, then one with no usable entry.
	v3, err := up.AddVulnDB(t1.Add(48*time.Hour), entries)
	if err != nil {
		t.Fatal(err)
	}
	up.SetZipMismatch(v3, true)
	waitVulnFailure(t, g, v2.Version, "checksum database")
	bad := map[string][]byte{fakeupstream.VulnMalformed + ".json": entries[fakeupstream.VulnMalformed+".json"]}
	if _, err := up.AddVulnDB(t1.Add(72*time.Hour), bad); err != nil {
		t.Fatal(err)
	}
	waitVulnFailure(t, g, v2.Version, "no OSV entries")
	if out := runVulncheck(append(c.env, "HTTPS_PROXY="), "-db", "http://"+g.listen+"/vuln"); !strings.Contains(out, "GO-2099-0006") {
		t.Errorf("govulncheck after the refresh does not report GO-2099-0006:\n%s", out)
	}

	// Offline, the gate builds the newest version it holds: the one in force before.
	g.stop()
	g = startGate(t, dataDir, "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey(), "--offline")
	waitVulnVersion(t, g, v2.Version)
}

// TestVulnBundleOffline carries the vulnerability database across an air
// gap: exported with --with-vulndb, imported into an offline gate, which
// builds it at once and serves it.
func TestVulnBundleOffline(t *testing.T) {
	dir := t.TempDir()
	up := fakeupstream.Start(t, fakeupstream.Options{})
	v1, err := up.AddVulnDB(time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC), fakeupstream.VulnDBEntries())
	if err != nil {
		t.Fatal(err)
	}
	out := startGate(t, filepath.Join(dir, "outside"), "--upstream", up.URL, "--upstream-sumdb", up.VerifierKey())
	file := filepath.Join(dir, "vulndb.tar")
	bundleCLI(t, out, 0, "export", "-o", file, "--with-vulndb")

	in := airGapped(t, up)
	if st, _ := adminCLI(t, in, "vuln", "status"); !strings.Contains(st, "no database built yet") {
		t.Errorf("an empty air-gapped gate's status:\n%s", st)
	}
	bundleCLI(t, in, 0, "import", file, "--trust", out.verifier)
	if st := waitVulnVersion(t, in, v1.Version); st.DB.Entries != 4 {
		t.Errorf("the imported database: %+v", st.DB)
	}
	status, body := httpGet(t, "http://"+in.listen+"/vuln/ID/"+fakeupstream.VulnLib+".json")
	if status != http.StatusOK || !strings.Contains(body, fakeupstream.VulnLib) {
		t.Errorf("GET /vuln/ID/%s.json on the air-gapped gate: %d %q", fakeupstream.VulnLib, status, body)
	}
}
