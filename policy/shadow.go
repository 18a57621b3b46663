package policy

import (
	"fmt"
	"path"
	"strings"

	"golang.org/x/mod/semver"
)

// Shadow says that an earlier module rule decides what a later rule
// matches, because the first matching rule wins.
type Shadow struct {
	// Rule is the id of the later, shadowed rule; Position its index.
	Rule     string `json:"rule"`
	Position int    `json:"position"`
	// By is the id of the earlier rule; ByPosition its index.
	By         string `json:"by"`
	ByPosition int    `json:"by_position"`
	// Full reports that By matches everything Rule matches: Rule never
	// decides anything. Otherwise By (with the other action) may decide
	// some of what Rule matches.
	Full bool `json:"full"`
	// Message says the same to a person.
	Message string `json:"message"`
}

// Shadows returns the earlier rules that decide what the module rule at
// index i matches: each earlier rule with the other action that may match
// some of it, and the first earlier rule (of either action) that matches
// all of it, after which the list ends. The analysis is conservative: a
// full shadow is reported only when it is certain; "may match some" is
// reported when an overlap cannot be ruled out (two globs, or a commit
// rule against a versions rule).
func (p *Policy) Shadows(i int) []Shadow {
	if i < 0 || i >= len(p.Rules) {
		return nil
	}
	later := p.Rules[i]
	var out []Shadow
	for j, earlier := range p.Rules[:i] {
		full := covers(earlier, later)
		if !full && (earlier.Action == later.Action || !overlaps(earlier, later)) {
			continue
		}
		s := Shadow{Rule: later.ID, Position: i, By: earlier.ID, ByPosition: j, Full: full}
		what, then := "some of what", "which rule %[1]s then does not decide"
		if full {
			what, then = "everything", "so rule %[1]s never decides anything"
		}
		s.Message = fmt.Sprintf("rule %s (position %d) comes first and %s %s rule %s matches, ",
			earlier.ID, j, verb3(earlier.Action), what, later.ID) + fmt.Sprintf(then, later.ID)
		out = append(out, s)
		if full {
			break
		}
	}
	return out
}

// AllShadows returns the Shadows of every module rule, in rule order.
func (p *Policy) AllShadows() []Shadow {
	var out []Shadow
	for i := range p.Rules {
		out = append(out, p.Shadows(i)...)
	}
	return out
}

func verb3(a Action) string {
	if a == Deny {
		return "denies"
	}
	return "allows"
}

// covers reports whether a matches every module version that b matches.
func covers(a, b Rule) bool {
	if !patternCovers(a.Module, b.Module) {
		return false
	}
	switch {
	case a.everyVersion():
		return true
	case a.Commit != "" || b.Commit != "":
		// a's hash, at most as long as b's, is a prefix of it.
		return a.Commit != "" && b.Commit != "" && strings.HasPrefix(b.Commit, a.Commit)
	case b.Versions == "":
		return false
	}
	bi, ai := intervals(b.Versions), intervals(a.Versions)
	if len(bi) == 0 {
		return false // b matches nothing: nothing to say about a
	}
	for _, x := range bi {
		if !containedInAny(x, ai) {
			return false
		}
	}
	return true
}

// overlaps reports whether a and b may match a module version in common.
func overlaps(a, b Rule) bool {
	if !patternsOverlap(a.Module, b.Module) {
		return false
	}
	switch {
	case a.everyVersion() || b.everyVersion():
		return true
	case a.Commit != "" && b.Commit != "":
		return strings.HasPrefix(a.Commit, b.Commit) || strings.HasPrefix(b.Commit, a.Commit)
	case a.Commit != "" || b.Commit != "":
		return true // which versions a commit has is not known here
	}
	for _, x := range intervals(a.Versions) {
		for _, y := range intervals(b.Versions) {
			if !intersect(x, y).empty() {
				return true
			}
		}
	}
	return false
}

// patternCovers reports whether the comma list a matches every path that
// the comma list b matches (each glob of b within some glob of a).
func patternCovers(a, b string) bool {
	for _, gb := range strings.Split(b, ",") {
		ok := false
		for _, ga := range strings.Split(a, ",") {
			if globCovers(ga, gb) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// globCovers reports whether glob a matches every path glob b matches. As
// module.MatchPrefixPatterns does, a glob of n elements matches the paths
// whose first n elements it matches, so a must have at most as many
// elements as b, each covering b's.
func globCovers(a, b string) bool {
	ea, eb := strings.Split(a, "/"), strings.Split(b, "/")
	if len(ea) > len(eb) {
		return false
	}
	for k, x := range ea {
		y := eb[k]
		if x == y || x == "*" {
			continue
		}
		if hasMeta(y) {
			return false // glob within glob: not certain
		}
		if ok, _ := path.Match(x, y); !ok {
			return false
		}
	}
	return true
}

// patternsOverlap reports whether two comma lists may match a path in common.
func patternsOverlap(a, b string) bool {
	for _, ga := range strings.Split(a, ",") {
		for _, gb := range strings.Split(b, ",") {
			if globsOverlap(ga, gb) {
				return true
			}
		}
	}
	return false
}

// globsOverlap reports whether two globs may match a path in common: over
// the elements both have, each pair may match a common element.
func globsOverlap(a, b string) bool {
	ea, eb := strings.Split(a, "/"), strings.Split(b, "/")
	for k := range min(len(ea), len(eb)) {
		x, y := ea[k], eb[k]
		switch {
		case !hasMeta(x) && !hasMeta(y):
			if x != y {
				return false
			}
		case !hasMeta(y):
			if ok, _ := path.Match(x, y); !ok {
				return false
			}
		case !hasMeta(x):
			if ok, _ := path.Match(y, x); !ok {
				return false
			}
		default: // two globs: compatible literal prefixes may overlap
			px, py := literalPrefix(x), literalPrefix(y)
			if !strings.HasPrefix(px, py) && !strings.HasPrefix(py, px) {
				return false
			}
		}
	}
	return true
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

func literalPrefix(s string) string {
	if i := strings.IndexAny(s, `*?[\`); i >= 0 {
		return s[:i]
	}
	return s
}

// bound is one end of a version interval; an empty v is unbounded.
type bound struct {
	v    string
	incl bool
}

// interval is the set of versions between lo and hi.
type interval struct{ lo, hi bound }

// intervals returns the non-empty intervals of a constraint's alternatives
// (nil for an invalid constraint).
func intervals(constraint string) []interval {
	c, err := ParseConstraint(constraint)
	if err != nil {
		return nil
	}
	var out []interval
	for _, terms := range c.any {
		var iv interval
		for _, t := range terms {
			b := bound{v: t.version, incl: t.op != "<" && t.op != ">"}
			if t.op != ">" && t.op != ">=" { // <, <=, =
				iv.hi = minHi(iv.hi, b)
			}
			if t.op != "<" && t.op != "<=" { // >, >=, =
				iv.lo = maxLo(iv.lo, b)
			}
		}
		if !iv.empty() {
			out = append(out, iv)
		}
	}
	return out
}

// maxLo returns the tighter of two lower bounds.
func maxLo(a, b bound) bound {
	switch {
	case a.v == "":
		return b
	case b.v == "":
		return a
	}
	c := semver.Compare(a.v, b.v)
	if c > 0 || c == 0 && !a.incl {
		return a
	}
	return b
}

// minHi returns the tighter of two upper bounds.
func minHi(a, b bound) bound {
	switch {
	case a.v == "":
		return b
	case b.v == "":
		return a
	}
	c := semver.Compare(a.v, b.v)
	if c < 0 || c == 0 && !a.incl {
		return a
	}
	return b
}

func (iv interval) empty() bool {
	if iv.lo.v == "" || iv.hi.v == "" {
		return false
	}
	c := semver.Compare(iv.lo.v, iv.hi.v)
	return c > 0 || c == 0 && !(iv.lo.incl && iv.hi.incl)
}

func intersect(a, b interval) interval {
	return interval{lo: maxLo(a.lo, b.lo), hi: minHi(a.hi, b.hi)}
}

// containedInAny reports whether x lies within one of list.
func containedInAny(x interval, list []interval) bool {
	for _, y := range list {
		if within(y.lo, x.lo, -1) && within(y.hi, x.hi, 1) {
			return true
		}
	}
	return false
}

// within reports whether the bound inner lies within outer: at or above
// it for lower bounds (dir -1), at or below it for upper bounds (dir 1).
func within(outer, inner bound, dir int) bool {
	switch {
	case outer.v == "":
		return true
	case inner.v == "":
		return false
	}
	c := semver.Compare(outer.v, inner.v) * dir
	return c > 0 || c == 0 && (outer.incl || !inner.incl)
}
