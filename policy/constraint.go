package policy

import (
	"fmt"
	"strings"

	"golang.org/x/mod/semver"
)

// Constraint is a parsed version constraint. Its syntax:
//
//	v1.2.3                 exactly v1.2.3 (the same as =v1.2.3)
//	<v1.2.0                an operator and a version: < <= > >= =
//	>=v1.0.0 <v2.0.0       terms separated by spaces: all must hold
//	v1.0.0, v1.1.0         alternatives separated by commas: any may hold
//
// In YAML, a list of strings is the same as its items joined by commas.
// An operator may be separated from its version by spaces (">= v1.0.0").
//
// Versions compare as golang.org/x/mod/semver compares them:
//
//   - Pseudo-versions order as the semver pre-releases they are:
//     v1.2.4-0.20240101000000-abcdefabcdef (a commit after v1.2.3) is above
//     v1.2.3 and below v1.2.4, so "<v1.2.4" matches it and ">=v1.2.4" does
//     not; v0.0.0-2024...-abc (no tag before it) is below v0.0.1.
//   - Build metadata is ignored, so v2.0.0+incompatible equals v2.0.0 and
//     "<v3.0.0" matches it; "+incompatible" may be written in a constraint.
//   - Shorthands compare as their canonical forms (v1.2 is v1.2.0).
//
// A version that is not valid semver matches no constraint.
type Constraint struct {
	any [][]term // alternatives of conjunctions
}

type term struct {
	op      string
	version string
}

// ParseConstraint parses s (see Constraint).
func ParseConstraint(s string) (Constraint, error) {
	var c Constraint
	if strings.TrimSpace(s) == "" {
		return c, fmt.Errorf("empty version constraint")
	}
	for alt := range strings.SplitSeq(s, ",") {
		terms, err := parseConjunction(alt)
		if err != nil {
			return Constraint{}, err
		}
		c.any = append(c.any, terms)
	}
	return c, nil
}

// parseConjunction parses space-separated terms.
func parseConjunction(s string) ([]term, error) {
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return nil, fmt.Errorf("empty alternative in the list (stray comma?)")
	}
	var terms []term
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if isOperator(f) && i+1 < len(fields) { // ">= v1.0.0"
			i++
			f += fields[i]
		}
		t, err := parseTerm(f)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	return terms, nil
}

func isOperator(s string) bool {
	switch s {
	case "<", "<=", ">", ">=", "=":
		return true
	}
	return false
}

// parseTerm parses an operator (optional) followed by a version.
func parseTerm(s string) (term, error) {
	op := ""
	for _, o := range []string{"<=", ">=", "<", ">", "="} {
		if strings.HasPrefix(s, o) {
			op = o
			break
		}
	}
	v := s[len(op):]
	switch {
	case op == "" && strings.ContainsAny(s[:1], "!~^*"):
		return term{}, fmt.Errorf("%q: unknown operator: use < <= > >= = (spaces join terms with and, commas with or)", s)
	case v == "":
		return term{}, fmt.Errorf("%q: operator without a version", s)
	case !semver.IsValid(v):
		return term{}, fmt.Errorf("%q: %q is not a semantic version such as v1.2.3", s, v)
	}
	if op == "" {
		op = "="
	}
	return term{op: op, version: v}, nil
}

// Match reports whether version satisfies the constraint.
func (c Constraint) Match(version string) bool {
	if !semver.IsValid(version) {
		return false
	}
	for _, terms := range c.any {
		if matchAll(terms, version) {
			return true
		}
	}
	return false
}

func matchAll(terms []term, version string) bool {
	for _, t := range terms {
		cmp := semver.Compare(version, t.version)
		var ok bool
		switch t.op {
		case "<":
			ok = cmp < 0
		case "<=":
			ok = cmp <= 0
		case ">":
			ok = cmp > 0
		case ">=":
			ok = cmp >= 0
		default:
			ok = cmp == 0
		}
		if !ok {
			return false
		}
	}
	return true
}

// String returns the constraint in canonical form, such as
// ">=v1.0.0 <v2.0.0, =v2.1.0".
func (c Constraint) String() string {
	alts := make([]string, len(c.any))
	for i, terms := range c.any {
		parts := make([]string, len(terms))
		for j, t := range terms {
			parts[j] = t.op + t.version
		}
		alts[i] = strings.Join(parts, " ")
	}
	return strings.Join(alts, ", ")
}
