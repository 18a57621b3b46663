// Package dnsname checks the labels of lower-case DNS names, the one
// check that policy (egress host rules) and pki (certificate names) share.
// It imports nothing of modgate's.
package dnsname

import "strings"

// Label reports whether label is a lower-case DNS label: 1 to 63 bytes of
// letters, digits, '-' and '_', not starting or ending with '-'. Names
// with '_' exist in DNS (and the egress target parser accepts them).
func Label(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	return strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

// HostLabel reports whether label is a lower-case host name label (RFC
// 1123): a Label without '_', as certificates need.
func HostLabel(label string) bool {
	return Label(label) && !strings.Contains(label, "_")
}
