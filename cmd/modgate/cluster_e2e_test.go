package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/cluster"
)

// TestClusterServesThroughEveryGate runs the real go command through each
// of three gates on one database: each serves verified modules, co-signed
// with the one enterprise key the cluster recorded from its first gate.
func TestClusterServesThroughEveryGate(t *testing.T) {
	c := startCluster(t, 3)
	var verifier string
	if err := c.db().QueryRow(t.Context(), "SELECT verifier FROM modgate_identity").Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if c.gate(i).verifier != verifier {
			t.Fatalf("gate %d has verifier %s, the cluster %s", i, c.gate(i).verifier, verifier)
		}
		cl := c.client(i, viaIntercept, appMod)
		cl.must(appDownload...)
		checkGoSum(t, c.up, cl)
		checkCoSigned(t, cl, verifier, c.up.VerifierKey())
	}
}

// TestClusterRefusesAGateWithOtherKeys is case 7 of issue 12: a gate with
// another enterprise note key (or another CA) is refused at start, with a
// clear error that names both keys and what to do, and the cluster keeps
// the identity of its first gate.
func TestClusterRefusesAGateWithOtherKeys(t *testing.T) {
	c := startCluster(t, 1)
	root := t.TempDir()
	otherNote := filepath.Join(root, "other-note")
	copyKeys(t, c.dirs[0], otherNote)
	for _, f := range []string{"note.key", "note.pub"} {
		os.Remove(filepath.Join(otherNote, f)) // serve creates a new note key
	}
	otherCA := filepath.Join(root, "other-ca")
	copyKeys(t, c.dirs[0], otherCA)
	for _, f := range []string{"ca.pem", "ca-key.pem"} {
		os.Remove(filepath.Join(otherCA, f)) // serve creates a new CA
	}
	tests := []struct {
		name, dir string
		want      []string
	}{
		{"fresh data directory", filepath.Join(root, "fresh"), []string{"enterprise verifier key", c.gate(0).verifier}},
		{"other note key", otherNote, []string{"enterprise verifier key", c.gate(0).verifier}},
		{"other CA", otherCA, []string{"CA certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := c.startFailing(tt.dir)
			want := append([]string{cluster.ErrIdentity.Error(), "copy them from a gate of the cluster"}, tt.want...)
			if !containsAll(out, want...) {
				t.Errorf("output does not say %q:\n%s", want, out)
			}
		})
	}
	var n int
	if err := c.db().QueryRow(t.Context(), "SELECT count(*) FROM modgate_identity").Scan(&n); err != nil || n != 1 {
		t.Fatalf("identity rows: %d, %v", n, err)
	}
	c.restart(0) // the first gate still joins
}

// TestClusterDatabasePasswordNeverShown: a password in the URL never
// reaches the logs, and a password file that others may read is refused
// with the chmod that fixes it, without showing the password.
func TestClusterDatabasePasswordNeverShown(t *testing.T) {
	const secret = "s3cret-pw-in-url"
	c := startCluster(t, 1)
	withPassword := strings.Replace(c.dbURL, "postgres://postgres@", "postgres://postgres:"+secret+"@", 1)
	c.gate(0).stop()
	g := startGate(t, c.dirs[0], "--upstream", c.up.URL, "--upstream-sumdb", c.up.VerifierKey(),
		"--cluster-db", withPassword)
	g.stop()
	if log := g.Log(); strings.Contains(log, secret) || !strings.Contains(log, "xxxxx") {
		t.Errorf("the log shows the password, or no redacted URL:\n%s", log)
	}
	file := filepath.Join(t.TempDir(), "db-password")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := c.startFailing(c.dirs[0], "--cluster-db-password-file", file)
	if strings.Contains(out, secret) || !strings.Contains(out, "chmod 600 "+file) {
		t.Errorf("a readable password file: output shows the password or lacks the fix:\n%s", out)
	}
	os.Chmod(file, 0o600)
	c.start(0, "--cluster-db-password-file", file) // trust authentication ignores it; it is read and used
}

// TestClusterWitnessCommandsNeedARunningGate: with every gate stopped,
// the witness commands refuse a clustered gate's data directory, whose
// cache does not hold the witness, and say what to do.
func TestClusterWitnessCommandsNeedARunningGate(t *testing.T) {
	c := startCluster(t, 1)
	c.gate(0).stop()
	for _, args := range [][]string{{"witness", "status"}, {"witness", "clear-fork", "--reason", "x"}} {
		out, code := runCLI(t, append(args, "--data-dir", c.dirs[0])...) // falls back to the cache, as in TestForkLifecycle
		if code == 0 || !strings.Contains(out, "is in a cluster") || !strings.Contains(out, "--admin") {
			t.Errorf("%v on a stopped clustered gate: exit %d\n%s", args, code, out)
		}
	}
}
