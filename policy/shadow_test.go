package policy

import (
	"strings"
	"testing"
)

func TestShadows(t *testing.T) {
	deny := func(id, mod, versions string) Rule {
		return Rule{ID: id, Action: Deny, Module: mod, Versions: versions, Reason: "r"}
	}
	allow := func(id, mod, versions string) Rule {
		return Rule{ID: id, Action: Allow, Module: mod, Versions: versions}
	}
	commit := func(r Rule, c string) Rule { r.Commit = c; return r }
	const hash = "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name    string
		earlier Rule
		later   Rule
		want    string // "" none, "full" or "some"
	}{
		{"the README's example", allow("corp", "example.com/*", ""), deny("d", "example.com/good", "v1.2.0"), "full"},
		{"same module, every version", allow("a", "example.com/m", ""), deny("d", "example.com/m", "<v1.0.0"), "full"},
		{"prefix covers sub-paths", allow("a", "example.com/m", ""), deny("d", "example.com/m/sub", ""), "full"},
		{"longer glob does not cover shorter", allow("a", "example.com/*", ""), deny("d", "example.com", ""), "some"},
		{"other module", allow("a", "example.com/a", ""), deny("d", "example.com/b", ""), ""},
		{"element-wise, not string prefix", allow("a", "example.com/bad", ""), deny("d", "example.com/badger", ""), ""},
		{"same action, some overlap: harmless", deny("a", "example.com/m", "<v1.0.0"), deny("d", "example.com/m", "<v2.0.0"), ""},
		{"same action, covered: redundant", deny("a", "example.com/m", "<v2.0.0"), deny("d", "example.com/m", "<v1.0.0"), "full"},
		{"range covers exact", allow("a", "example.com/m", ">=v1.0.0 <v2.0.0"), deny("d", "example.com/m", "v1.2.0"), "full"},
		{"range covers range", allow("a", "example.com/m", "<=v1.5.0"), deny("d", "example.com/m", ">=v1.0.0 <v1.5.0"), "full"},
		{"open bound does not cover closed", allow("a", "example.com/m", "<v1.5.0"), deny("d", "example.com/m", ">=v1.0.0 <=v1.5.0"), "some"},
		{"disjoint ranges", allow("a", "example.com/m", "<v1.0.0"), deny("d", "example.com/m", ">=v1.0.0"), ""},
		{"touching bounds", allow("a", "example.com/m", "<=v1.0.0"), deny("d", "example.com/m", ">=v1.0.0"), "some"},
		{"alternatives each covered", allow("a", "example.com/m", "<v1.0.0, v2.0.0"), deny("d", "example.com/m", "v0.9.0, v2.0.0"), "full"},
		{"one alternative not covered", allow("a", "example.com/m", "<v1.0.0"), deny("d", "example.com/m", "v0.9.0, v2.0.0"), "some"},
		{"every version covers a commit rule", allow("a", "example.com/*", ""), commit(deny("d", "example.com/m", ""), hash), "full"},
		{"the same commit", commit(allow("a", "example.com/m", ""), hash), commit(deny("d", "example.com/m", ""), hash), "full"},
		{"commit prefix covers full hash", commit(allow("a", "example.com/m", ""), hash[:12]), commit(deny("d", "example.com/m", ""), hash), "full"},
		{"full hash does not cover its prefix", commit(allow("a", "example.com/m", ""), hash), commit(deny("d", "example.com/m", ""), hash[:12]), "some"},
		{"other commits", commit(allow("a", "example.com/m", ""), hash), commit(deny("d", "example.com/m", ""), "fedcba9876543210"), ""},
		{"versions against a commit: may overlap", allow("a", "example.com/m", "<v2.0.0"), commit(deny("d", "example.com/m", ""), hash), "some"},
		{"list: every glob covered", allow("a", "example.com/*,corp.example.com", ""), deny("d", "example.com/x,corp.example.com/y", ""), "full"},
		{"list: one glob not covered", allow("a", "example.com/*", ""), deny("d", "example.com/x,other.org/y", ""), "some"},
		{"glob element covers literal", allow("a", "github.com/*/evil", ""), deny("d", "github.com/someone/evil", ""), "full"},
		{"two globs with different literal prefixes", allow("a", "example.com/a*", ""), deny("d", "example.com/b*", ""), ""},
		{"two globs that may meet", allow("a", "example.com/a*", ""), deny("d", "example.com/ab*", ""), "some"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Rules: []Rule{tt.earlier, tt.later}}
			got := p.Shadows(1)
			switch {
			case tt.want == "" && len(got) != 0:
				t.Errorf("Shadows = %+v, want none", got)
			case tt.want != "" && len(got) != 1:
				t.Fatalf("Shadows = %+v, want one (%s)", got, tt.want)
			case tt.want != "" && got[0].Full != (tt.want == "full"):
				t.Errorf("Shadows = %+v, want full %v", got[0], tt.want == "full")
			case tt.want != "" && (got[0].By != tt.earlier.ID || got[0].ByPosition != 0 || !strings.Contains(got[0].Message, "rule "+tt.earlier.ID+" (position 0)")):
				t.Errorf("Shadows = %+v, want it to name rule %s at position 0", got[0], tt.earlier.ID)
			}
			// A rule is never shadowed by what comes after it.
			if later := (&Policy{Rules: []Rule{tt.later, tt.earlier}}).Shadows(0); len(later) != 0 {
				t.Errorf("the first rule is shadowed: %+v", later)
			}
		})
	}
}

func TestAllShadowsStopsAtTheFirstFull(t *testing.T) {
	p := &Policy{Rules: []Rule{
		{ID: "old", Action: Allow, Module: "example.com/m", Versions: "<v1.0.0"},
		{ID: "corp", Action: Allow, Module: "example.com/*"},
		{ID: "dup", Action: Allow, Module: "example.com"},
		{ID: "d", Action: Deny, Module: "example.com/m", Reason: "r"},
	}}
	var got []string
	for _, s := range p.AllShadows() {
		got = append(got, s.Rule+"<"+s.By)
	}
	if want := "d<old d<corp"; strings.Join(got, " ") != want {
		t.Errorf("AllShadows = %q, want %q", got, want)
	}
}
