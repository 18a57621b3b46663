package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// commitHash is the commit of example.com/commit v1.2.0 in the test below.
const commitHash = "0123456789abcdef0123456789abcdef01234567"

// commitArchive is a txtar archive of example.com/commit at version, with
// extra JSON fields in its .info (such as an Origin).
func commitArchive(version, infoExtra string) []byte {
	return fmt.Appendf(nil, `-- .info --
{"Version":%q,"Time":"2024-01-02T00:00:00Z"%s}
-- go.mod --
module example.com/commit

go 1.21
-- commit.go --
// Package commit is a test module whose tag and pseudo-version share a commit.
package commit

// Version returns the version of this module.
func Version() string { return %q }
`, version, infoExtra, version)
}

// publishCommitModule adds example.com/commit v1.1.0 (another commit),
// v1.2.0 (whose .info names commitHash in Origin.Hash) and a
// pseudo-version of the same commit to up, and returns the pseudo-version.
func publishCommitModule(t *testing.T, up *fakeupstream.Server) string {
	t.Helper()
	pseudo := "v1.2.1-0.20240102000000-" + commitHash[:12]
	for version, extra := range map[string]string{
		"v1.1.0": `,"Origin":{"VCS":"git","URL":"https://example.com/commit","Hash":"fedcba9876543210fedcba9876543210fedcba98","Ref":"refs/tags/v1.1.0"}`,
		"v1.2.0": `,"Origin":{"VCS":"git","URL":"https://example.com/commit","Hash":"` + strings.ToUpper(commitHash) + `","Ref":"refs/tags/v1.2.0"}`,
		pseudo:   "",
	} {
		if _, err := up.AddArchive("example.com_commit_"+version+".txt", commitArchive(version, extra)); err != nil {
			t.Fatal(err)
		}
	}
	return pseudo
}

// TestPolicyCommitRules runs the real binary and checks that a versions
// rule matches version strings only (a deny of v1.2.0 lets a pseudo-version
// of the same commit through, and policy test says so), and that a
// commit: rule denies every version of that commit whose commit is known:
// the tag through its .info's Origin.Hash, the pseudo-version through its
// hash, through interception and in the filtered version list.
func TestPolicyCommitRules(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	up, g := fakeGate(t, dataDir)
	pseudo := publishCommitModule(t, up)

	mustPolicy(t, g, "deny", "example.com/commit@v1.2.0", "--reason", "bad release", "--id", "tag")
	if out, err := goGet(t, g, "example.com/commit@"+pseudo); err != nil {
		t.Errorf("go get of a pseudo-version of the denied tag's commit: %v (a versions rule matches version strings)\n%s", err, out)
	}
	out := mustPolicy(t, g, "test", "example.com/commit@"+pseudo)
	for _, want := range []string{"allowed", "versions rules match version strings", commitHash[:12] + " (from the pseudo-version)"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy test of the pseudo-version lacks %q:\n%s", want, out)
		}
	}

	mustPolicy(t, g, "rm", "tag")
	mustPolicy(t, g, "deny", "example.com/commit@commit:"+commitHash, "--reason", "backdoored commit", "--id", "bad-commit")
	for _, v := range []string{"v1.2.0", pseudo} {
		out, err := goGet(t, g, "example.com/commit@"+v)
		if err == nil || !strings.Contains(out, "denied by policy rule bad-commit: backdoored commit (commit ") {
			t.Errorf("go get example.com/commit@%s under a commit rule: err=%v, want the denial:\n%s", v, err, out)
		}
	}
	out, code := policyCLI(t, g, "test", "example.com/commit@v1.2.0")
	if code != 1 || !strings.Contains(out, commitHash+" (from Origin.Hash of the .info)") || !strings.Contains(out, "bad-commit") {
		t.Errorf("policy test of the tag under the commit rule: exit %d:\n%s", code, out)
	}
	c := newClient(t, g, viaIntercept, g.verifier, emptyMod)
	c.must("get", "example.com/commit@latest")
	if mod := string(c.file("app/go.mod")); !strings.Contains(mod, "example.com/commit v1.1.0") {
		t.Errorf("go get example.com/commit@latest with v1.2.0's commit denied chose:\n%s", mod)
	}

	// Where the upstream names no commit, policy test says commit rules
	// cannot match, and the tag is allowed.
	mustPolicy(t, g, "deny", "example.com/lib@commit:"+commitHash, "--reason", "r")
	out = mustPolicy(t, g, "test", "example.com/lib@v1.2.0")
	if !strings.Contains(out, "unknown\n") || !strings.Contains(out, "commit rules cannot match it") {
		t.Errorf("policy test of a version without a known commit:\n%s", out)
	}

	// A commit rule must be a hash, and not come with versions.
	for _, arg := range []string{"example.com/m@commit:xyz", "example.com/m@commit:0123", "example.com/m@commit:" + strings.ToUpper(commitHash)} {
		if out, code := policyCLI(t, g, "deny", arg, "--reason", "r"); code != 1 || !strings.Contains(out, "rule.commit") {
			t.Errorf("policy deny %s: exit %d, want 1 naming rule.commit:\n%s", arg, code, out)
		}
	}
	if out, code := policyCLI(t, g, "deny", "example.com/m@commit:", "--reason", "r"); code != 2 {
		t.Errorf("policy deny with an empty commit: exit %d, want 2:\n%s", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, "policy.yaml")); !strings.Contains(string(b), "commit: "+commitHash) {
		t.Errorf("policy.yaml lacks the commit rule:\n%s", b)
	}
}
