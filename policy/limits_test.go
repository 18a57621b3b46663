package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestRuleLimits checks the length limits a rule is held to when it is
// added (Rule.Validate), not only when a file is read.
func TestRuleLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	emoji := strings.Repeat("\U0001F600", 900000)
	tests := []struct {
		name  string
		rule  Rule
		field string // "" when valid
	}{
		{"pattern at the limit", Rule{ID: "a", Action: Allow, Module: long(MaxPatternLen)}, ""},
		{"pattern over the limit", Rule{ID: "a", Action: Allow, Module: long(MaxPatternLen + 1)}, "module"},
		{"900,000 emoji", Rule{ID: "a", Action: Deny, Module: emoji, Reason: "r"}, "module"},
		{"one non-ASCII character", Rule{ID: "a", Action: Deny, Module: "example.com/é", Reason: "r"}, "module"},
		{"a control character", Rule{ID: "a", Action: Deny, Module: "example.com/\x7f", Reason: "r"}, "module"},
		{"versions at the limit", Rule{ID: "a", Action: Allow, Module: "m", Versions: strings.Repeat("v1.0.0,", MaxVersionsLen/7) + "v1"}, ""},
		{"versions over the limit", Rule{ID: "a", Action: Allow, Module: "m", Versions: strings.Repeat("v1.0.0,", MaxVersionsLen/7+1) + "v1"}, "versions"},
		{"reason over the limit", Rule{ID: "a", Action: Deny, Module: "m", Reason: strings.Repeat("\U0001F600", MaxReasonLen/4+1)}, "reason"},
		{"id over the limit", Rule{ID: long(MaxIDLen + 1), Action: Allow, Module: "m"}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.rule.Validate()
			var ve *ValidationError
			switch {
			case tt.field == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
				t.Errorf("Validate = %v, want a problem with %s", err, tt.field)
			case tt.field != "" && len(err.Error()) > 500:
				t.Errorf("Validate's error is %d bytes; it should not echo the whole input", len(err.Error()))
			}
		})
	}
	h := HostRule{ID: "h", Action: Allow, Host: "example.com"}
	for i := range MaxPorts + 1 {
		h.Ports = append(h.Ports, 1000+i)
	}
	var ve *ValidationError
	if err := h.Validate(); !errors.As(err, &ve) || ve.Field != "ports" {
		t.Errorf("a host rule with %d ports: %v, want a problem with ports", len(h.Ports), err)
	}
	p := &Policy{Private: []string{long(MaxPatternLen + 1)}}
	if err := p.Validate(); !errors.As(err, &ve) || ve.Field != "private[0]" {
		t.Errorf("an overlong private pattern: %v", err)
	}
}

// TestUpdateRefusesAFileItCouldNotReadBack checks that a change whose
// file would be over MaxFileSize (every rule valid on its own, but non-ASCII
// reasons written escaped) is refused before anything is written, that the
// policy in force stays, and that the file still opens.
func TestUpdateRefusesAFileItCouldNotReadBack(t *testing.T) {
	ctx := context.Background()
	f, path, _ := openTemp(t, "mode: enforce\nrules: []\n")
	before, _ := os.ReadFile(path)
	reason := strings.Repeat("\U0001F600", MaxReasonLen/4)
	_, _, err := f.Update(ctx, func(p *Policy) error {
		for i := range 6000 {
			p.Rules = append(p.Rules, Rule{ID: fmt.Sprintf("r%d", i), Action: Deny, Module: fmt.Sprintf("example.com/m%d", i), Reason: reason})
		}
		return nil
	})
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "policy file would be") {
		t.Fatalf("Update to a file over %d bytes: %v, want a *ValidationError naming the size", MaxFileSize, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("the refused update changed the file")
	}
	if len(f.Current().Rules) != 0 {
		t.Errorf("the refused update is in force")
	}
	if _, err := OpenFile(ctx, path, nil); err != nil {
		t.Errorf("the file no longer opens: %v", err)
	}
	// A large change that fits is written, and reads back equal.
	_, after, err := f.Update(ctx, func(p *Policy) error {
		for i := range 2000 {
			p.Rules = append(p.Rules, Rule{ID: fmt.Sprintf("r%d", i), Action: Deny, Module: fmt.Sprintf("example.com/m%d", i), Reason: reason})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := OpenFile(ctx, path, nil)
	if err != nil || len(g.Current().Rules) != len(after.Rules) {
		t.Fatalf("reopening after a large update: %v", err)
	}
}
