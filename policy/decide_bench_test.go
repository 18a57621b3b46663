package policy

import (
	"testing"
	"time"
)

// BenchmarkDecide decides on module versions against a policy of a few
// rules with version constraints, retraction and a cooldown.
func BenchmarkDecide(b *testing.B) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	p := &Policy{Mode: Enforce, Default: Allow, DenyRetracted: true, Cooldown: 72 * time.Hour, Rules: []Rule{
		{ID: "bad-old", Action: Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "CVE-2099-0001"},
		{ID: "lib-range", Action: Deny, Module: "example.com/lib", Versions: ">=v1.0.0 <v2.0.0, v2.1.0", Reason: "TICKET-1"},
		{ID: "corp", Action: Allow, Module: "corp.example.com/*"},
		{ID: "glob", Action: Deny, Module: "github.com/*/evil", Reason: "evil"},
	}}
	inputs := []struct {
		name string
		in   Input
	}{
		{"no rule matches", Input{Module: "github.com/klauspost/compress", Version: "v1.18.0", Facts: Facts{Published: now.Add(-30 * 24 * time.Hour), Now: now}}},
		{"constraint denies", Input{Module: "example.com/lib", Version: "v1.5.0"}},
		{"allow rule", Input{Module: "corp.example.com/tools", Version: "v0.1.0"}},
	}
	for _, tt := range inputs {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(tt.in)
			}
		})
	}
}
