package policy

import (
	"errors"
	"strings"
	"testing"
)

const testCommit = "0123456789abcdef0123456789abcdef01234567"

func TestDecideCommitRules(t *testing.T) {
	p := &Policy{Rules: []Rule{
		{ID: "tag", Action: Deny, Module: "example.com/tag", Versions: "v1.2.0", Reason: "bad release"},
		{ID: "bad-commit", Action: Deny, Module: "example.com/m", Commit: testCommit, Reason: "backdoor"},
		{ID: "short", Action: Deny, Module: "example.com/short", Commit: testCommit[:12], Reason: "short"},
	}}
	pseudo := "v1.2.1-0.20240102000000-" + testCommit[:12]
	tests := []struct {
		name, mod, version, commit string
		rule                       string // the deciding rule
	}{
		{"versions match version strings, not commits", "example.com/tag", pseudo, "", "default"},
		{"the tag itself", "example.com/tag", "v1.2.0", "", "tag"},
		{"pseudo-version of the commit", "example.com/m", pseudo, "", "bad-commit"},
		{"untagged pseudo-version of the commit", "example.com/m", "v0.0.0-20240102000000-" + testCommit[:12], "", "bad-commit"},
		{"pre-release pseudo-version of the commit", "example.com/m", "v1.3.0-rc.1.0.20240102000000-" + testCommit[:12], "", "bad-commit"},
		{"tag whose Origin.Hash is the commit", "example.com/m", "v1.2.0", testCommit, "bad-commit"},
		{"Origin.Hash in upper case", "example.com/m", "v1.2.0", strings.ToUpper(testCommit), "bad-commit"},
		{"tag with another commit", "example.com/m", "v1.2.0", "fedcba9876543210fedcba9876543210fedcba98", "default"},
		{"tag whose commit is unknown", "example.com/m", "v1.2.0", "", "default"},
		{"pseudo-version of another commit", "example.com/m", "v1.2.1-0.20240102000000-fedcba987654", "", "default"},
		{"a rule's prefix matches a full hash", "example.com/short", "v1.0.0", testCommit, "short"},
		{"a too-short known hash matches nothing", "example.com/short", "v1.0.0", testCommit[:8], "default"},
		{"another module", "example.com/other", pseudo, "", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(Input{Module: tt.mod, Version: tt.version, Facts: Facts{Commit: tt.commit}})
			if d.Rule != tt.rule || d.Allowed != (tt.rule == "default") {
				t.Errorf("Decide(%s@%s, commit %q) = %+v, want rule %s", tt.mod, tt.version, tt.commit, d, tt.rule)
			}
			if tt.rule == "bad-commit" && !strings.Contains(d.Reason, "backdoor (commit ") {
				t.Errorf("reason %q does not name the commit", d.Reason)
			}
		})
	}
}

func TestCommitRuleValidation(t *testing.T) {
	tests := []struct {
		name, commit, versions string
		ok                     bool
	}{
		{"full SHA-1", testCommit, "", true},
		{"12 digits", testCommit[:12], "", true},
		{"SHA-256", strings.Repeat("ab", 32), "", true},
		{"too short", testCommit[:11], "", false},
		{"too long", strings.Repeat("a", 65), "", false},
		{"upper case", strings.ToUpper(testCommit), "", false},
		{"not hex", "0123456789abcdeg", "", false},
		{"with versions", testCommit, "v1.0.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Rule{ID: "c", Action: Deny, Module: "example.com/m", Commit: tt.commit, Versions: tt.versions, Reason: "r"}.Validate()
			var ve *ValidationError
			if tt.ok != (err == nil) || (err != nil && (!errors.As(err, &ve) || ve.Field != "commit")) {
				t.Errorf("Validate = %v, want ok %v (or a problem with commit)", err, tt.ok)
			}
		})
	}
}

func TestNeedsCommit(t *testing.T) {
	p := &Policy{Rules: []Rule{
		{ID: "all", Action: Allow, Module: "corp.example.com"},
		{ID: "c", Action: Deny, Module: "example.com/m,corp.example.com/x", Commit: testCommit, Reason: "r"},
		{ID: "v", Action: Deny, Module: "example.com/v", Versions: "<v1.0.0", Reason: "r"},
	}}
	for mod, want := range map[string]bool{
		"example.com/m": true, "example.com/m/sub": true, "corp.example.com/x": false, "example.com/v": false, "other.org/m": false,
	} {
		if got := p.NeedsCommit(mod); got != want {
			t.Errorf("NeedsCommit(%s) = %v, want %v", mod, got, want)
		}
	}
	// A commit rule, unlike a rule without versions, leaves the facts needed.
	p.DenyRetracted = true
	if r, _ := p.Needs("example.com/m"); !r {
		t.Errorf("Needs(example.com/m) under a commit rule = false, want the retraction facts")
	}
}

func TestParseCommitRule(t *testing.T) {
	doc := "rules:\n  - id: c\n    action: deny\n    module: example.com/m\n    commit: " + testCommit + "\n    reason: backdoor\n"
	p, err := Parse([]byte(doc))
	if err != nil || len(p.Rules) != 1 || p.Rules[0].Commit != testCommit {
		t.Fatalf("Parse: %v %+v", err, p)
	}
	out, err := p.Marshal()
	if err != nil || !strings.Contains(string(out), "commit: "+testCommit) {
		t.Fatalf("Marshal: %v\n%s", err, out)
	}
	var r Rule
	if err := r.UnmarshalJSON([]byte(`{"id":"c","action":"deny","module":"m","commit":"` + testCommit + `","reason":"r"}`)); err != nil || r.Commit != testCommit {
		t.Errorf("UnmarshalJSON: %v %+v", err, r)
	}
	bad := strings.Replace(doc, "reason: backdoor", "versions: v1.0.0\n    reason: backdoor", 1)
	var ve *ValidationError
	if _, err := Parse([]byte(bad)); !errors.As(err, &ve) || ve.Field != "rules[0].commit" || ve.Line == 0 {
		t.Errorf("Parse of a rule with commit and versions: %v", err)
	}
}
