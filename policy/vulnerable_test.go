package policy

import (
	"strings"
	"testing"
)

func TestVulnerableParse(t *testing.T) {
	tests := []struct {
		name, doc, err string
		want           *Vulnerable
	}{
		{"absent", "mode: enforce\n", "", nil},
		{"default action", "vulnerable: {}\n", "", &Vulnerable{Action: VulnReport}},
		{"full", "vulnerable:\n  action: deny\n  ignore: [GO-2021-0113]\n  reviewed_only: true\n", "",
			&Vulnerable{Action: VulnDeny, Ignore: []string{"GO-2021-0113"}, ReviewedOnly: true}},
		{"bad action", "vulnerable:\n  action: block\n", "vulnerable.action", nil},
		{"bad id", "vulnerable:\n  ignore: [CVE-2021-1]\n", "vulnerable.ignore[0]", nil},
		{"unknown key", "vulnerable:\n  mode: deny\n", "vulnerable.mode: unknown field", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one naming %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.Vulnerable == nil) != (tt.want == nil) ||
				(tt.want != nil && (p.Vulnerable.Action != tt.want.Action ||
					p.Vulnerable.ReviewedOnly != tt.want.ReviewedOnly ||
					strings.Join(p.Vulnerable.Ignore, ",") != strings.Join(tt.want.Ignore, ","))) {
				t.Fatalf("Vulnerable = %+v, want %+v", p.Vulnerable, tt.want)
			}
			out, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("reparsing the marshalled policy: %v\n%s", err, out)
			}
			if (back.Vulnerable == nil) != (p.Vulnerable == nil) {
				t.Fatalf("round trip lost the section:\n%s", out)
			}
		})
	}
}

func TestVulnerableDecide(t *testing.T) {
	lib := []Vuln{{ID: "GO-2021-0113", Fixed: "v0.3.7", Reviewed: true}, {ID: "GO-2022-1059", Fixed: "v0.3.8", Reviewed: true}}
	facts := Facts{VulnsKnown: true, Vulns: lib}
	tests := []struct {
		name, doc string
		facts     Facts
		allowed   bool
		would     bool
		rule      string
		reason    string
	}{
		{"deny", "vulnerable: {action: deny}\n", facts, false, false, RuleVulnerable,
			"affected by GO-2021-0113, GO-2022-1059; fixed in v0.3.8"},
		{"report", "vulnerable: {action: report}\n", facts, true, true, RuleVulnerable, "affected by"},
		{"policy report mode", "mode: report\nvulnerable: {action: deny}\n", facts, true, true, RuleVulnerable, ""},
		{"no section", "mode: enforce\n", facts, true, false, RuleDefault, ""},
		{"unknown facts", "vulnerable: {action: deny}\n", Facts{Vulns: lib}, true, false, RuleDefault, ""},
		{"ignored", "vulnerable: {action: deny, ignore: [GO-2021-0113, GO-2022-1059]}\n", facts, true, false,
			RuleDefault, ""},
		{"one ignored", "vulnerable: {action: deny, ignore: [GO-2022-1059]}\n", facts, false, false, RuleVulnerable,
			"affected by GO-2021-0113; fixed in v0.3.7"},
		{"withdrawn", "vulnerable: {action: deny}\n",
			Facts{VulnsKnown: true, Vulns: []Vuln{{ID: "GO-2099-0004", Withdrawn: true}}}, true, false, RuleDefault, ""},
		{"unreviewed, reviewed_only", "vulnerable: {action: deny, reviewed_only: true}\n",
			Facts{VulnsKnown: true, Vulns: []Vuln{{ID: "GO-2099-0002", Fixed: "v1.2.0"}}}, true, false, RuleDefault, ""},
		{"unreviewed counts", "vulnerable: {action: deny}\n",
			Facts{VulnsKnown: true, Vulns: []Vuln{{ID: "GO-2099-0002", Fixed: "v1.2.0"}}}, false, false, RuleVulnerable,
			"fixed in v1.2.0"},
		{"no fix", "vulnerable: {action: deny}\n",
			Facts{VulnsKnown: true, Vulns: []Vuln{{ID: "GO-2099-0007", Reviewed: true}}}, false, false, RuleVulnerable,
			"no fixed version"},
		{"ordered fixes", "vulnerable: {action: deny}\n", Facts{VulnsKnown: true, Vulns: []Vuln{
			{ID: "GO-2021-0113", Fixed: "v0.10.0", FixedOrder: 2, Reviewed: true},
			{ID: "GO-2022-1059", Fixed: "v0.9.0", FixedOrder: 1, Reviewed: true}}},
			false, false, RuleVulnerable, "fixed in v0.10.0"},
		{"order unknown for one", "vulnerable: {action: deny}\n", Facts{VulnsKnown: true, Vulns: []Vuln{
			{ID: "GO-2021-0113", Fixed: "v0.10.0", FixedOrder: 1, Reviewed: true},
			{ID: "GO-2022-1059", Fixed: "v0.9.0", Reviewed: true}}},
			false, false, RuleVulnerable, "fixed in v0.10.0"},
		{"allow rule wins", "rules:\n  - {id: ok, action: allow, module: golang.org/x/text}\nvulnerable: {action: deny}\n",
			facts, true, false, "ok", ""},
		{"deny rule first", "rules:\n  - {id: no, action: deny, module: golang.org/x/text, reason: x}\n" +
			"vulnerable: {action: deny}\n", facts, false, false, "no", ""},
		{"report with default deny", "default: deny\nvulnerable: {action: report}\n", facts, false, false,
			RuleDefault, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(Input{Module: "golang.org/x/text", Version: "v0.3.5", Facts: tt.facts})
			if d.Allowed != tt.allowed || d.WouldDeny != tt.would || d.Rule != tt.rule ||
				!strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide = %+v, want allowed %v would_deny %v rule %s reason ~%q", d, tt.allowed, tt.would,
					tt.rule, tt.reason)
			}
		})
	}
}

func TestNeedsVulns(t *testing.T) {
	p, err := Parse([]byte("rules:\n  - {id: ok, action: allow, module: corp.example.com}\nvulnerable: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.NeedsVulns("corp.example.com/x") || !p.NeedsVulns("golang.org/x/text") {
		t.Error("NeedsVulns: want false for a module an every-version rule decides, true otherwise")
	}
	if (&Policy{}).NeedsVulns("golang.org/x/text") {
		t.Error("NeedsVulns without the section: want false")
	}
}
