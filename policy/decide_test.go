package policy

import (
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	fresh := Facts{Published: now.Add(-time.Hour), Now: now}
	old := Facts{Published: now.Add(-30 * 24 * time.Hour), Now: now}
	retracted := Facts{Retracted: true, RetractedKnown: true, Rationale: "broke the API\nsecond line", Now: now}
	rules := []Rule{
		{ID: "bad-old", Action: Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "CVE-2099-0001"},
		{ID: "lib-range", Action: Deny, Module: "example.com/lib", Versions: ">=v1.0.0 <v2.0.0, v2.1.0", Reason: "TICKET-1"},
		{ID: "corp", Action: Allow, Module: "corp.example.com/*"},
		{ID: "corp-all", Action: Deny, Module: "corp.example.com", Reason: "never reached for subpaths"},
		{ID: "incompat", Action: Deny, Module: "example.com/old", Versions: "<v3.0.0", Reason: "too old"},
		{ID: "exact", Action: Deny, Module: "example.com/exact", Versions: "v1.0.0+incompatible", Reason: "exact"},
		{ID: "pinned", Action: Allow, Module: "example.com/fresh", Versions: "v1.0.0", Reason: "reviewed"},
		{ID: "glob", Action: Deny, Module: "github.com/*/evil", Reason: "evil"},
	}
	base := &Policy{Mode: Enforce, Default: Allow, Rules: rules}
	with := func(f func(p *Policy)) *Policy { p := base.Clone(); f(p); return p }
	strict := with(func(p *Policy) { p.DenyRetracted, p.Cooldown = true, 72*time.Hour })
	report := with(func(p *Policy) { p.Mode = Report; p.DenyRetracted = true })
	denyAll := with(func(p *Policy) { p.Default = Deny })
	zero := &Policy{}

	tests := []struct {
		name    string
		p       *Policy
		mod, v  string
		facts   Facts
		allowed bool
		would   bool
		rule    string
		reason  string // substring
	}{
		{"below constraint denied", base, "example.com/bad", "v1.1.0", Facts{}, false, false, "bad-old", "CVE-2099-0001"},
		{"at bound allowed", base, "example.com/bad", "v1.2.0", Facts{}, true, false, "default", "default is allow"},
		{"above bound allowed", base, "example.com/bad", "v1.10.0", Facts{}, true, false, "default", ""},
		{"prefix is element-wise", base, "example.com/badger", "v1.0.0", Facts{}, true, false, "default", ""},
		{"subpath matches prefix", base, "example.com/bad/sub", "v1.0.0", Facts{}, false, false, "bad-old", ""},
		{
			"pseudo before tag is below it",
			base,
			"example.com/bad",
			"v1.2.0-0.20240101000000-abcdefabcdef",
			Facts{},
			false,
			false,
			"bad-old",
			"",
		},
		{
			"pseudo after tag is above it",
			base,
			"example.com/bad",
			"v1.2.1-0.20240101000000-abcdefabcdef",
			Facts{},
			true,
			false,
			"default",
			"",
		},
		{
			"untagged pseudo is below v0.0.1",
			base,
			"example.com/bad",
			"v0.0.0-20240101000000-abcdefabcdef",
			Facts{},
			false,
			false,
			"bad-old",
			"",
		},
		{"prerelease below bound", base, "example.com/bad", "v1.2.0-rc.1", Facts{}, false, false, "bad-old", ""},
		{"range: inside", base, "example.com/lib", "v1.5.0", Facts{}, false, false, "lib-range", "TICKET-1"},
		{"range: upper bound excluded", base, "example.com/lib", "v2.0.0", Facts{}, true, false, "default", ""},
		{"range: alternative", base, "example.com/lib", "v2.1.0", Facts{}, false, false, "lib-range", ""},
		{"range: below", base, "example.com/lib", "v0.9.0", Facts{}, true, false, "default", ""},
		{"first match wins", base, "corp.example.com/x", "v1.0.0", Facts{}, true, false, "corp", "allowed by rule corp"},
		{"later rule reached for apex", base, "corp.example.com", "v1.0.0", Facts{}, false, false, "corp-all", ""},
		{
			"+incompatible compares as its version",
			base,
			"example.com/old",
			"v2.0.0+incompatible",
			Facts{},
			false,
			false,
			"incompat",
			"",
		},
		{"+incompatible exact", base, "example.com/exact", "v1.0.0+incompatible", Facts{}, false, false, "exact", ""},
		{"glob element", base, "github.com/someone/evil", "v1.0.0", Facts{}, false, false, "glob", "evil"},
		{"glob does not span elements", base, "github.com/a/b/evil", "v1.0.0", Facts{}, true, false, "default", ""},
		{
			"invalid version never matches a constraint",
			base,
			"example.com/bad",
			"latest",
			Facts{},
			true,
			false,
			"default",
			"",
		},
		{
			"retracted denied",
			strict,
			"example.com/x",
			"v1.0.0",
			retracted,
			false,
			false,
			"retracted",
			"retracted by the module's authors: broke the API",
		},
		{"retracted off", base, "example.com/x", "v1.0.0", retracted, true, false, "default", ""},
		{
			"retraction unknown denies nothing",
			strict,
			"example.com/x",
			"v1.0.0",
			Facts{Retracted: true, Now: now},
			true,
			false,
			"default",
			"",
		},
		{"allow rule exempts from retraction", strict, "corp.example.com/x", "v1.0.0", retracted, true, false, "corp", ""},
		{"deny rule beats retraction", strict, "example.com/bad", "v1.0.0", retracted, false, false, "bad-old", ""},
		{"cooldown denies fresh", strict, "example.com/x", "v1.0.0", fresh, false, false, "cooldown", "published 1h ago"},
		{"cooldown passes old", strict, "example.com/x", "v1.0.0", old, true, false, "default", ""},
		{
			"cooldown boundary passes",
			strict,
			"example.com/x",
			"v1.0.0",
			Facts{Published: now.Add(-72 * time.Hour), Now: now},
			true,
			false,
			"default",
			"",
		},
		{
			"cooldown future time",
			strict,
			"example.com/x",
			"v1.0.0",
			Facts{Published: now.Add(time.Hour), Now: now},
			false,
			false,
			"cooldown",
			"in the future",
		},
		{"cooldown unknown publish time", strict, "example.com/x", "v1.0.0", Facts{Now: now}, true, false, "default", ""},
		{"cooldown unknown now", strict, "example.com/x", "v1.0.0", Facts{Published: now}, true, false, "default", ""},
		{"allow rule exempts from cooldown", strict, "corp.example.com/x", "v1.0.0", fresh, true, false, "corp", ""},
		{
			"pinned allow exempts that version",
			strict,
			"example.com/fresh",
			"v1.0.0",
			fresh,
			true,
			false,
			"pinned",
			"reviewed",
		},
		{
			"pinned allow does not exempt others",
			strict,
			"example.com/fresh",
			"v1.1.0",
			fresh,
			false,
			false,
			"cooldown",
			"72h cooldown",
		},
		{"default deny", denyAll, "example.com/x", "v1.0.0", Facts{}, false, false, "default", "default is deny"},
		{"default deny after allow rule", denyAll, "corp.example.com/a", "v1.0.0", Facts{}, true, false, "corp", ""},
		{
			"report mode lets a rule denial through",
			report,
			"example.com/bad",
			"v1.0.0",
			Facts{},
			true,
			true,
			"bad-old",
			"CVE",
		},
		{"report mode lets retracted through", report, "example.com/x", "v1.0.0", retracted, true, true, "retracted", ""},
		{"report mode allow is plain", report, "example.com/x", "v1.0.0", Facts{}, true, false, "default", ""},
		{"zero policy allows", zero, "example.com/bad", "v1.0.0", Facts{}, true, false, "default", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Module: tt.mod, Version: tt.v, Facts: tt.facts}
			d := tt.p.Decide(in)
			if d.Allowed != tt.allowed || d.WouldDeny != tt.would || d.Rule != tt.rule {
				t.Fatalf(
					"Decide(%s@%s) = %+v; want allowed=%v would_deny=%v rule=%s",
					tt.mod,
					tt.v,
					d,
					tt.allowed,
					tt.would,
					tt.rule,
				)
			}
			if wantAction := Allow; !tt.allowed || tt.would {
				wantAction = Deny
				if d.Action != wantAction {
					t.Errorf("action %s, want %s", d.Action, wantAction)
				}
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, tt.reason)
			}
			if d.Reason == "" || strings.Contains(d.Reason, "\n") {
				t.Errorf("reason %q: want one non-empty line", d.Reason)
			}
			if again := tt.p.Decide(in); again != d {
				t.Errorf("Decide is not pure: %+v then %+v", d, again)
			}
		})
	}
}

func TestNeeds(t *testing.T) {
	p := &Policy{DenyRetracted: true, Cooldown: time.Hour, Rules: []Rule{
		{ID: "a", Action: Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "r"},
		{ID: "b", Action: Allow, Module: "corp.example.com"},
		{ID: "c", Action: Deny, Module: "example.com/bad/sub", Reason: "r"},
	}}
	tests := []struct {
		mod                  string
		retractions, publish bool
	}{
		{"example.com/other", true, true},
		{"example.com/bad", true, true},      // the constrained rule leaves versions to the facts
		{"corp.example.com/x", false, false}, // rule b decides every version
		{"example.com/bad/sub", false, false},
	}
	for _, tt := range tests {
		r, pub := p.Needs(tt.mod)
		if r != tt.retractions || pub != tt.publish {
			t.Errorf("Needs(%s) = %v, %v; want %v, %v", tt.mod, r, pub, tt.retractions, tt.publish)
		}
	}
	if r, pub := (&Policy{}).Needs("example.com/x"); r || pub {
		t.Errorf("zero policy needs facts: %v, %v", r, pub)
	}
}

func TestDecideHost(t *testing.T) {
	p := &Policy{Egress: Egress{Rules: []HostRule{
		{ID: "gh", Action: Allow, Host: "github.com"},
		{ID: "sub", Action: Deny, Host: "*.evil.example", Reason: "evil"},
		{ID: "any-sub", Action: Allow, Host: "*.example.com", Ports: []int{443, 8443}},
		{ID: "apex", Action: Allow, Host: "evil.example"},
	}}}
	report := p.Clone()
	report.Egress.Mode = Report
	open := p.Clone()
	open.Egress.Default = Allow
	tests := []struct {
		name    string
		p       *Policy
		host    string
		port    int
		allowed bool
		would   bool
		rule    string
	}{
		{"exact host", p, "github.com", 443, true, false, "gh"},
		{"case and trailing dot", p, "GitHub.COM.", 443, true, false, "gh"},
		{"other port refused", p, "github.com", 22, false, false, "default"},
		{"exact does not match subdomain", p, "api.github.com", 443, false, false, "default"},
		{"wildcard matches subdomain", p, "a.evil.example", 443, false, false, "sub"},
		{"wildcard matches deeper", p, "a.b.evil.example", 443, false, false, "sub"},
		{"wildcard does not match apex", p, "evil.example", 443, true, false, "apex"},
		{"suffix without dot does not match", p, "notexample.com", 443, false, false, "default"},
		{"listed port", p, "x.example.com", 8443, true, false, "any-sub"},
		{"unlisted port", p, "x.example.com", 80, false, false, "default"},
		{"zero egress default is deny", p, "unknown.test", 443, false, false, "default"},
		{"default allow", open, "unknown.test", 443, true, false, "default"},
		{"report mode", report, "a.evil.example", 443, true, true, "sub"},
		{"report mode default", report, "unknown.test", 443, true, true, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.p.DecideHost(tt.host, tt.port)
			if d.Allowed != tt.allowed || d.WouldDeny != tt.would || d.Rule != tt.rule || d.Reason == "" {
				t.Errorf(
					"DecideHost(%s, %d) = %+v; want allowed=%v would_deny=%v rule=%s",
					tt.host,
					tt.port,
					d,
					tt.allowed,
					tt.would,
					tt.rule,
				)
			}
		})
	}
}

// TestConstraintsParsedAtLoad checks that loading parses each version
// constraint once, that decisions use it, and that normalizing a Clone
// leaves the original's parsed constraints alone.
func TestConstraintsParsedAtLoad(t *testing.T) {
	p, err := Parse([]byte("rules:\n" +
		"  - {id: a, action: deny, module: example.com/a, versions: \"<v1.2.0\", reason: r}\n" +
		"  - {id: b, action: deny, module: example.com/b, versions: \" <v1.2.0 \", reason: r}\n" +
		"  - {id: c, action: allow, module: example.com/c}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.constraints) != 1 {
		t.Fatalf("parsed constraints = %v, want one for \"<v1.2.0\"", p.constraints)
	}
	tests := []struct {
		mod, version string
		allowed      bool
	}{
		{"example.com/a", "v1.1.0", false},
		{"example.com/a", "v1.2.0", true},
		{"example.com/b", "v1.0.0", false},
		{"example.com/c", "v9.0.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.mod+"@"+tt.version, func(t *testing.T) {
			if d := p.Decide(Input{Module: tt.mod, Version: tt.version}); d.Allowed != tt.allowed {
				t.Errorf("Decide = %+v, want allowed %v", d, tt.allowed)
			}
		})
	}
	c := p.Clone()
	c.Rules[0].Versions = ">=v2.0.0"
	c.normalize()
	if _, ok := p.constraints[">=v2.0.0"]; ok || len(p.constraints) != 1 {
		t.Errorf("normalizing a clone changed the original's constraints: %v", p.constraints)
	}
	if d := c.Decide(Input{Module: "example.com/a", Version: "v2.1.0"}); d.Allowed {
		t.Errorf("clone: Decide(v2.1.0) = %+v, want denied by the new constraint", d)
	}
	hand := &Policy{Rules: []Rule{{ID: "h", Action: Deny, Module: "example.com/a", Versions: "<v1.0.0"}}}
	if d := hand.Decide(Input{Module: "example.com/a", Version: "v0.9.0"}); d.Allowed {
		t.Errorf("policy built in code: Decide = %+v, want denied", d)
	}
}

// TestDecideCooldownSources checks that the cooldown measures from the
// latest publication time the facts hold, and that its reason says where
// that time comes from.
func TestDecideCooldownSources(t *testing.T) {
	now := time.Date(2026, 12, 1, 14, 0, 0, 0, time.UTC)
	p := &Policy{Cooldown: 72 * time.Hour}
	backdated := time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		facts   Facts
		allowed bool
		reason  string // exact
	}{
		{"backdated .info, fresh record", Facts{Now: now, InfoTime: backdated, FirstSeen: now.Add(-2 * time.Hour), Record: 72101234, RecordKnown: true},
			false, "first seen in the checksum database 2h ago (2026-12-01T12:00:00Z, record 72101234), within the 72h cooldown; its .info claims 2019-01-01T00:00:00Z"},
		{"fresh .info, record seen earlier", Facts{Now: now, InfoTime: now.Add(-time.Hour), FirstSeen: now.Add(-2 * time.Hour), Record: 7, RecordKnown: true},
			false, "published 1h ago (2026-12-01T13:00:00Z, its .info Time), within the 72h cooldown; first seen in the checksum database 2026-12-01T12:00:00Z (record 7)"},
		{"record before the first witnessed head", Facts{Now: now, InfoTime: now.Add(-time.Hour), Record: 3, RecordKnown: true, BeforeWitness: true},
			false, "published 1h ago (2026-12-01T13:00:00Z, its .info Time), within the 72h cooldown; record 3 predates the gate's first witnessed tree head, so only its .info dates it"},
		{"private module: .info only", Facts{Now: now, InfoTime: now.Add(-time.Hour)},
			false, "published 1h ago (2026-12-01T13:00:00Z, its .info Time), within the 72h cooldown"},
		{"both old", Facts{Now: now, InfoTime: backdated, FirstSeen: now.Add(-100 * time.Hour), Record: 1, RecordKnown: true},
			true, "no rule matched; the policy's default is allow"},
		{"the latest wins over Published", Facts{Now: now, Published: backdated, FirstSeen: now.Add(-time.Hour), Record: 9, RecordKnown: true},
			false, "first seen in the checksum database 1h ago (2026-12-01T13:00:00Z, record 9), within the 72h cooldown"},
		{"unknown time", Facts{Now: now},
			true, "no rule matched; the policy's default is allow (publication time unknown: the cooldown does not hold it back)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(Input{Module: "example.com/x", Version: "v1.2.3", Facts: tt.facts})
			if d.Allowed != tt.allowed || d.Reason != tt.reason {
				t.Errorf("Decide = %+v\nwant allowed=%v reason %q", d, tt.allowed, tt.reason)
			}
		})
	}
}
