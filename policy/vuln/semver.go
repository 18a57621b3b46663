package vuln

import (
	"strings"

	"golang.org/x/mod/semver"
)

// version is a semantic version parsed once, so that a check compares
// without parsing again: numbers as decimal strings without leading zeros
// (compared by length, then bytes), the pre-release without its "-", and
// build metadata (+incompatible) dropped, as golang.org/x/mod/semver
// orders versions.
type version struct {
	major, minor, patch, pre string
}

// parseVersion parses a canonical-able "v" version; ok is false for an
// invalid one.
func parseVersion(v string) (version, bool) {
	if !semver.IsValid(v) {
		return version{}, false
	}
	c := semver.Canonical(v) // vMAJOR.MINOR.PATCH[-pre], without build metadata
	core, pre, _ := strings.Cut(c[1:], "-")
	parts := strings.SplitN(core, ".", 3)
	return version{major: parts[0], minor: parts[1], patch: parts[2], pre: pre}, true
}

// compare orders versions as semver.Compare does.
func (a version) compare(b version) int {
	if c := compareNum(a.major, b.major); c != 0 {
		return c
	}
	if c := compareNum(a.minor, b.minor); c != 0 {
		return c
	}
	if c := compareNum(a.patch, b.patch); c != 0 {
		return c
	}
	return comparePre(a.pre, b.pre)
}

// compareNum compares decimal numbers without leading zeros.
func compareNum(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// comparePre compares pre-releases as semantic versioning says: none is
// above any; dot-separated identifiers compare numerically when both are
// numbers, numbers below words, and a shorter list of equal identifiers
// below a longer one.
func comparePre(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	for a != "" && b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		if x == y {
			continue
		}
		xn, yn := isNum(x), isNum(y)
		switch {
		case xn && yn:
			return compareNum(x, y)
		case xn:
			return -1
		case yn:
			return 1
		}
		return strings.Compare(x, y)
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func isNum(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
