package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const fullPolicy = `# a comment
mode: report
default: deny
deny_retracted: true
cooldown: 3d
private:
  - corp.example.com/*
rules:
  - id: cve-1
    action: deny
    module: example.com/bad
    versions: "<v1.2.0"
    reason: CVE-2099-0001
  - id: list
    action: deny
    module: example.com/lib
    versions: [">=v1.0.0 <v1.5.0", v2.0.0]
    reason: TICKET-1
  - id: corp
    action: allow
    module: corp.example.com/*,other.example/x
egress:
  default: allow
  rules:
    - id: gh
      action: allow
      host: "*.github.com"
      ports: [443, 22]
`

func TestParseFull(t *testing.T) {
	p, err := Parse([]byte(fullPolicy))
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Mode: Report, Default: Deny, DenyRetracted: true, Cooldown: 72 * time.Hour,
		Private: []string{"corp.example.com/*"},
		Rules: []Rule{
			{ID: "cve-1", Action: Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "CVE-2099-0001"},
			{ID: "list", Action: Deny, Module: "example.com/lib", Versions: ">=v1.0.0 <v1.5.0, v2.0.0", Reason: "TICKET-1"},
			{ID: "corp", Action: Allow, Module: "corp.example.com/*,other.example/x"},
		},
		Egress: Egress{
			Mode:    Enforce,
			Default: Allow,
			Rules:   []HostRule{{ID: "gh", Action: Allow, Host: "*.github.com", Ports: []int{443, 22}}},
		},
	}
	want.normalize() // parses the version constraints, as loading does
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Parse =\n%+v\nwant\n%+v", p, want)
	}
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), Header) || !strings.Contains(string(out), "cooldown: 72h\n") {
		t.Errorf("Marshal output:\n%s", out)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, p) {
		t.Errorf("round trip changed the policy:\n%+v\n%+v", back, p)
	}
}

func TestParseDefaults(t *testing.T) {
	for _, src := range []string{"{}", "mode: enforce\n", "rules: []\n", "rules:\n", string(DefaultFile())} {
		p, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		want := &Policy{Mode: Enforce, Default: Allow, Egress: Egress{Mode: Enforce, Default: Deny}}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", src, p, want)
		}
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	rule := func(extra string) string {
		return "rules:\n  - id: a\n    action: allow\n    module: example.com/a\n  - id: b\n    action: deny\n    module: example.com/b\n    reason: r\n" + extra
	}
	tests := []struct {
		name  string
		src   string
		field string
		line  int
		want  string
	}{
		{"empty", "", "", 0, "empty policy"},
		{"not a mapping", "- a\n", "", 1, "mapping"},
		{"syntax", "mode: [\n", "", 1, "YAML"},
		{"two documents", "mode: enforce\n---\nmode: report\n", "", 2, "more than one"},
		{"unknown top field", "mode: enforce\nmodes: report\n", "modes", 2, "unknown field"},
		{"repeated field", "mode: enforce\nmode: report\n", "mode", 2, "repeated"},
		{"bad mode", "mode: strict\n", "mode", 1, "not a mode"},
		{"bad default", "default: maybe\n", "default", 1, "not an action"},
		{"bad type", "deny_retracted: perhaps\n", "deny_retracted", 1, "bool"},
		{"bad cooldown", "cooldown: soon\n", "cooldown", 1, "duration"},
		{"negative cooldown", "cooldown: -1h\n", "cooldown", 1, "negative"},
		{"bad private", "private: ['a b']\n", "private[0]", 1, "spaces"},
		{"rules not a list", "rules: {}\n", "rules", 1, "list"},
		{"unknown rule field", rule("    version: <v1\n"), "rules[1].version", 9, "unknown field"},
		{"bad versions", rule("    versions: <=1.2\n"), "rules[1].versions", 9, "not a semantic version"},
		{"bad operator", rule("    versions: ~v1.2.0\n"), "rules[1].versions", 9, "unknown operator"},
		{"stray comma", rule("    versions: v1.0.0,\n"), "rules[1].versions", 9, "empty alternative"},
		{"versions list of lists", rule("    versions: [[v1.0.0]]\n"), "rules[1].versions", 9, "strings"},
		{"missing id", "rules:\n  - action: allow\n    module: m\n", "rules[0].id", 2, "required"},
		{"bad id", "rules:\n  - id: 'a b'\n    action: allow\n    module: m\n", "rules[0].id", 2, "letters"},
		{"duplicate id", rule("  - id: a\n    action: allow\n    module: x\n"), "rules[2].id", 9, "duplicate"},
		{"bad action", "rules:\n  - id: a\n    action: block\n    module: m\n", "rules[0].action", 3, "not an action"},
		{"missing module", "rules:\n  - id: a\n    action: allow\n", "rules[0].module", 2, "required"},
		{
			"bad module glob",
			"rules:\n  - id: a\n    action: allow\n    module: 'example.com/['\n",
			"rules[0].module",
			4,
			"bad glob",
		},
		{
			"deny without reason",
			"rules:\n  - id: a\n    action: deny\n    module: m\n",
			"rules[0].reason",
			2,
			"needs a reason",
		},
		{
			"multi-line reason",
			"rules:\n  - id: a\n    action: deny\n    module: m\n    reason: \"a\\nb\"\n",
			"rules[0].reason",
			5,
			"one line",
		},
		{"bad egress mode", "egress:\n  mode: loud\n", "egress.mode", 2, "not a mode"},
		{"unknown egress field", "egress:\n  hosts: []\n", "egress.hosts", 2, "unknown field"},
		{
			"bad host",
			"egress:\n  rules:\n    - id: h\n      action: allow\n      host: Example.com:443\n",
			"egress.rules[0].host",
			5,
			"lower-case",
		},
		{
			"apex wildcard only",
			"egress:\n  rules:\n    - id: h\n      action: allow\n      host: '*.'\n",
			"egress.rules[0].host",
			5,
			"required",
		},
		{
			"bad port",
			"egress:\n  rules:\n    - id: h\n      action: allow\n      host: a.b\n      ports: [0]\n",
			"egress.rules[0].ports[0]",
			6,
			"1-65535",
		},
		{
			"id shared with a host rule",
			"rules:\n  - id: a\n    action: allow\n    module: m\negress:\n  rules:\n    - id: a\n      action: allow\n      host: a.b\n",
			"egress.rules[0].id",
			7,
			"duplicate",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src))
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v (%T), want a *ValidationError", err, err)
			}
			if ve.Field != tt.field || ve.Line != tt.line || !strings.Contains(ve.Problem, tt.want) {
				t.Errorf(
					"got field %q line %d problem %q; want field %q line %d problem containing %q",
					ve.Field,
					ve.Line,
					ve.Problem,
					tt.field,
					tt.line,
					tt.want,
				)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
}

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		c     string
		canon string
		yes   []string
		no    []string
	}{
		{"v1.2.3", "=v1.2.3", []string{"v1.2.3"}, []string{"v1.2.4", "v1.2.3-pre"}},
		{"= v1.2", "=v1.2", []string{"v1.2.0"}, []string{"v1.2.1"}},
		{
			"<v1.2.0",
			"<v1.2.0",
			[]string{"v1.1.9", "v1.2.0-rc.1", "v0.0.0-20200101000000-abcdefabcdef"},
			[]string{"v1.2.0", "v2.0.0"},
		},
		{"<=v1.2.0", "<=v1.2.0", []string{"v1.2.0"}, []string{"v1.2.1-0.20200101000000-abcdefabcdef"}},
		{">v1.2.0", ">v1.2.0", []string{"v1.2.1-0.20200101000000-abcdefabcdef", "v2.0.0+incompatible"}, []string{"v1.2.0"}},
		{">= v1.0.0  < v2.0.0", ">=v1.0.0 <v2.0.0", []string{"v1.0.0", "v1.99.0"}, []string{"v2.0.0", "v0.9.0"}},
		{"v1.0.0, v1.1.0", "=v1.0.0, =v1.1.0", []string{"v1.0.0", "v1.1.0"}, []string{"v1.0.1"}},
		{"<v3.0.0+incompatible", "<v3.0.0+incompatible", []string{"v2.0.0+incompatible"}, []string{"v3.0.0"}},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.c)
		if err != nil {
			t.Errorf("ParseConstraint(%q): %v", tt.c, err)
			continue
		}
		if c.String() != tt.canon {
			t.Errorf("%q: String() = %q, want %q", tt.c, c, tt.canon)
		}
		for _, v := range tt.yes {
			if !c.Match(v) {
				t.Errorf("%q does not match %s", tt.c, v)
			}
		}
		for _, v := range append(tt.no, "not-a-version", "") {
			if c.Match(v) {
				t.Errorf("%q matches %s", tt.c, v)
			}
		}
	}
	for _, bad := range []string{"", " ", ",", "v1,,v2", "1.2.3", "<", "<=", "!=v1.0.0", "^v1.0.0", "*", "=>v1.0.0", "v1.0.0 <"} {
		if _, err := ParseConstraint(bad); err == nil {
			t.Errorf("ParseConstraint(%q) succeeded", bad)
		}
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p, err := Parse([]byte(fullPolicy))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"cooldown":"72h"`) || !strings.Contains(string(b), `"deny_retracted":true`) {
		t.Errorf("JSON form: %s", b)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("JSON round trip:\n%+v\n%+v", &back, p)
	}
	fromJSON, err := Parse(b) // JSON is YAML
	if err != nil || !reflect.DeepEqual(fromJSON, p) {
		t.Errorf("Parse(JSON) = %+v, %v", fromJSON, err)
	}
	if err := json.Unmarshal([]byte(`{"mode":"enforce","extra":1}`), &back); err == nil {
		t.Error("UnmarshalJSON accepted an unknown field")
	}
	var r Rule
	if err := json.Unmarshal([]byte(`{"id":"a","action":"deny","module":"m","versions":["v1.0.0","<v0.5.0"],"reason":"x"}`), &r); err != nil ||
		r.Versions != "v1.0.0, <v0.5.0" {
		t.Errorf("rule with a versions list: %+v, %v", r, err)
	}
	if err := json.Unmarshal([]byte(`{"id":"a","modul":"m"}`), &r); err == nil {
		t.Error("Rule.UnmarshalJSON accepted an unknown field")
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"72h": 72 * time.Hour, "3d": 72 * time.Hour, "0": 0, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute} {
		d, err := ParseDuration(in)
		if err != nil || d != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, d, err)
		}
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Errorf("FormatDuration(%v) = %q does not parse back", d, FormatDuration(d))
		}
	}
	if got := FormatDuration(72 * time.Hour); got != "72h" {
		t.Errorf("FormatDuration(72h) = %q", got)
	}
	for _, bad := range []string{"soon", "-1h", "-1d", "1.5d", "d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{fullPolicy, string(DefaultFile()), "{}", "rules: []", "mode: report\nrules:\n  - {id: a, action: deny, module: '*', reason: r, versions: [v1.0.0]}\n", `{"cooldown":"1h1m1s"}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed policy: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(p)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip changed the policy:\n%#v\n%#v\n%s", p, back, out)
		}
	})
}
