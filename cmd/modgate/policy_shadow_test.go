package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/policy"
)

// TestPolicyRulePositionsAndShadows runs the real binary under the issue's
// policy (rule corp allows example.com/*): a new deny goes first by
// default and takes effect at once; a rule put where an earlier rule
// shadows it is added with a warning naming that rule; --first, --last and
// --position place rules; and policy check names shadowed rules too.
func TestPolicyRulePositionsAndShadows(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	doc := "mode: enforce\ndefault: allow\nrules:\n  - id: corp\n    action: allow\n    module: example.com/*\n    reason: our own modules\n"
	if err := os.WriteFile(policyFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, g := fakeGate(t, filepath.Join(dir, "data"), "--policy", policyFile)

	out := mustPolicy(t, g, "deny", "example.com/lib@v1.2.0", "--reason", "broken release")
	if !strings.Contains(out, "added rule deny-1 at position 0") || strings.Contains(out, "warning") {
		t.Errorf("policy deny under an allow of example.com/*: %q, want it first, without a warning", out)
	}
	if out, err := goGet(t, g, "example.com/lib@v1.2.0"); err == nil || !strings.Contains(out, "denied by policy rule deny-1: broken release") {
		t.Errorf("go get of the version just denied: err=%v, want the denial:\n%s", err, out)
	}

	steps := []struct {
		args []string
		code int
		want []string // in the combined output
		not  string
	}{
		{[]string{"deny", "example.com/bad@v1.1.0", "--reason", "CVE-2099-0002", "--position", "2"}, 0,
			[]string{"added rule deny-2 at position 2", "warning: rule corp (position 1) comes first and allows everything rule deny-2 matches, so rule deny-2 never decides anything", "--position 1"}, ""},
		{[]string{"allow", "example.com/lib@v1.2.0", "--id", "fix"}, 0,
			[]string{"added rule fix at position 3", "warning: rule deny-1 (position 0) comes first and denies everything rule fix matches"}, ""},
		{[]string{"allow", "example.com/lib@>=v1.0.0", "--id", "fix-first", "--first"}, 0, []string{"added rule fix-first at position 0"}, "warning"},
		{[]string{"deny", "example.com/lib@v1.2.0", "--reason", "r", "--id", "tail", "--last"}, 0,
			[]string{"added rule tail at position 5", "rule fix-first (position 0) comes first and allows everything rule tail matches"}, ""},
		{[]string{"deny", "example.com/lib@<v1.1.0", "--reason", "r", "--id", "partly", "--position", "1"}, 0,
			[]string{"added rule partly at position 1", "rule fix-first (position 0) comes first and allows some of what rule partly matches"}, "never decides"},
		{[]string{"deny", "example.com/x", "--reason", "r", "--first", "--position", "3"}, 2, []string{"give one of --position, --first and --last"}, ""},
		{[]string{"deny", "example.com/x", "--reason", "r", "--position", "-3"}, 2, []string{"--position -3"}, ""},
		{[]string{"deny", "example.com/x", "--reason", "r", "--position", "99"}, 1, []string{"position 99 is not in 0-"}, ""},
	}
	for _, s := range steps {
		out, code := policyCLI(t, g, s.args...)
		if code != s.code {
			t.Errorf("policy %q: exit %d, want %d:\n%s", s.args, code, s.code, out)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("policy %q: output lacks %q:\n%s", s.args, w, out)
			}
		}
		if s.not != "" && strings.Contains(out, s.not) {
			t.Errorf("policy %q: output has %q:\n%s", s.args, s.not, out)
		}
	}
	if got := ruleIDsOf(currentPolicy(t, g).Rules); got != "fix-first,partly,deny-1,corp,deny-2,fix,tail" {
		t.Errorf("rules in force: %s", got)
	}

	exported := filepath.Join(t.TempDir(), "exported.yaml")
	os.WriteFile(exported, []byte(mustPolicy(t, g, "export")), 0o644)
	out, code := policyCLI(t, g, "check", exported)
	for _, w := range []string{
		"rules[1]: warning: rule fix-first (position 0) comes first and allows some of what rule partly matches",
		"rules[2]: warning: rule fix-first (position 0) comes first and allows everything rule deny-1 matches",
		"rules[4]: warning: rule corp (position 3) comes first and allows everything rule deny-2 matches",
		"rules[6]: warning: rule fix-first (position 0) comes first and allows everything rule tail matches",
	} {
		if code != 0 || !strings.Contains(out, w) {
			t.Errorf("policy check: exit %d, output lacks %q:\n%s", code, w, out)
		}
	}
}

func ruleIDsOf(rules []policy.Rule) string {
	var ids []string
	for _, r := range rules {
		ids = append(ids, r.ID)
	}
	return strings.Join(ids, ",")
}
