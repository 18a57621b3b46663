package dnsname

import (
	"strings"
	"testing"
)

func TestLabel(t *testing.T) {
	tests := []struct {
		in          string
		label, host bool
	}{
		{"example", true, true},
		{"a-b", true, true},
		{"x1", true, true},
		{"_acme", true, false},
		{"a_b", true, false},
		{"", false, false},
		{"-a", false, false},
		{"a-", false, false},
		{"Upper", false, false},
		{"a.b", false, false},
		{"a b", false, false},
		{strings.Repeat("a", 63), true, true},
		{strings.Repeat("a", 64), false, false},
		{"é", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Label(tt.in); got != tt.label {
				t.Errorf("Label(%q) = %v, want %v", tt.in, got, tt.label)
			}
			if got := HostLabel(tt.in); got != tt.host {
				t.Errorf("HostLabel(%q) = %v, want %v", tt.in, got, tt.host)
			}
		})
	}
}
