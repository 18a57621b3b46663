package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

// RuleVulnerable is the built-in rule name of a decision by the
// vulnerable: section.
const RuleVulnerable = "vulnerable"

// VulnAction is what the vulnerable: section does with an affected version.
type VulnAction string

// The actions of the vulnerable: section.
const (
	// VulnReport lets an affected version through, and logs and audits it
	// as a would-be denial.
	VulnReport VulnAction = "report"
	// VulnDeny refuses an affected version.
	VulnDeny VulnAction = "deny"
)

// MaxIgnore is the most vulnerability IDs vulnerable.ignore may list.
const MaxIgnore = 10000

// Vulnerable is the policy for versions with known vulnerabilities (the
// gate's mirror of the Go vulnerability database). A nil *Vulnerable
// checks nothing.
type Vulnerable struct {
	// Action is report or deny; empty means report.
	Action VulnAction `yaml:"action,omitempty" json:"action,omitempty"`
	// Ignore lists entry IDs (such as GO-2021-0113) that never count.
	Ignore []string `yaml:"ignore,omitempty" json:"ignore,omitempty"`
	// ReviewedOnly leaves out entries marked UNREVIEWED.
	ReviewedOnly bool `yaml:"reviewed_only,omitempty" json:"reviewed_only,omitempty"`
}

// Vuln is a vulnerability database entry that affects a module version:
// a fact the gate establishes from its mirror.
type Vuln struct {
	ID string `json:"id"`
	// Fixed is the newest version that fixes it ("v0.3.8"); empty if none.
	Fixed string `json:"fixed,omitempty"`
	// FixedOrder, when every Vuln of a version has it (> 0 for a non-empty
	// Fixed), orders their Fixed versions (higher is newer) without
	// comparing them; 0 means unknown.
	FixedOrder int `json:"-"`
	// Reviewed is false for an entry marked UNREVIEWED.
	Reviewed bool `json:"reviewed"`
	// Withdrawn entries never count.
	Withdrawn bool `json:"withdrawn,omitempty"`
}

// vulnID is the form of a Go vulnerability ID.
var vulnID = regexp.MustCompile(`^GO-[0-9]{4}-[0-9]{4,7}$`)

// clone returns a deep copy of v (nil for nil).
func (v *Vulnerable) clone() *Vulnerable {
	if v == nil {
		return nil
	}
	c := *v
	c.Ignore = slices.Clone(v.Ignore)
	return &c
}

// normalize fills in the default action and makes an empty list nil.
func (v *Vulnerable) normalize() {
	if v == nil {
		return
	}
	if v.Action == "" {
		v.Action = VulnReport
	}
	if len(v.Ignore) == 0 {
		v.Ignore = nil
	}
}

// validate reports what is wrong with the vulnerable: section.
func (v *Vulnerable) validate(add addFunc) {
	if v == nil {
		return
	}
	if v.Action != "" && v.Action != VulnReport && v.Action != VulnDeny {
		add("vulnerable.action", "%q: want report or deny", v.Action)
	}
	if len(v.Ignore) > MaxIgnore {
		add("vulnerable.ignore", "%d IDs; at most %d are allowed", len(v.Ignore), MaxIgnore)
		return
	}
	for i, id := range v.Ignore {
		if !vulnID.MatchString(id) {
			add(fmt.Sprintf("vulnerable.ignore[%d]", i), "%q is not a Go vulnerability ID such as GO-2021-0113", id)
		}
	}
}

// counted returns the entries of vulns the section counts: not withdrawn,
// not ignored, and reviewed if it says reviewed_only.
func (v *Vulnerable) counted(vulns []Vuln) []Vuln {
	out := make([]Vuln, 0, len(vulns))
	for _, x := range vulns {
		if x.Withdrawn || (v.ReviewedOnly && !x.Reviewed) || slices.Contains(v.Ignore, x.ID) {
			continue
		}
		out = append(out, x)
	}
	return out
}

// decideVuln is the vulnerable: step of Decide: a denial when a counted
// entry affects the version. Unknown facts (VulnsKnown false) deny nothing.
func (p *Policy) decideVuln(f Facts) (Decision, bool) {
	if p.Vulnerable == nil || !f.VulnsKnown {
		return Decision{}, false
	}
	counted := p.Vulnerable.counted(f.Vulns)
	if len(counted) == 0 {
		return Decision{}, false
	}
	return Decision{Action: Deny, Rule: RuleVulnerable, Reason: VulnReason(counted)}, true
}

// maxReasonIDs bounds the IDs a reason lists, so that it fits what the go
// command shows of an error.
const maxReasonIDs = 12

// VulnReason says which entries affect a version and which version fixes
// them all: "affected by GO-2021-0113, GO-2022-1059; fixed in v0.3.8".
func VulnReason(vulns []Vuln) string {
	ids := make([]string, 0, len(vulns))
	ordered := !slices.ContainsFunc(vulns, func(v Vuln) bool { return v.Fixed != "" && v.FixedOrder <= 0 })
	fixed, order, unfixed := "", 0, []string(nil)
	for _, v := range vulns {
		ids = append(ids, v.ID)
		switch {
		case v.Fixed == "":
			unfixed = append(unfixed, v.ID)
		case ordered && v.FixedOrder > order, !ordered && (fixed == "" || semver.Compare(v.Fixed, fixed) > 0):
			fixed, order = v.Fixed, v.FixedOrder
		}
	}
	if !slices.IsSorted(ids) { // the index returns them sorted
		slices.Sort(ids)
	}
	var b strings.Builder
	for i, id := range ids[:min(len(ids), maxReasonIDs)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(id)
	}
	if len(ids) > maxReasonIDs {
		b.WriteString(" and " + strconv.Itoa(len(ids)-maxReasonIDs) + " more")
	}
	list := b.String()
	switch {
	case len(unfixed) == len(vulns):
		return "affected by " + list + "; no fixed version"
	case len(unfixed) > 0:
		return fmt.Sprintf("affected by %s; fixed in %s except %s (no fixed version)", list, fixed,
			strings.Join(unfixed, ", "))
	}
	return "affected by " + list + "; fixed in " + fixed
}

// NeedsVulns reports whether the vulnerable: section could decide a
// version of mod: it is set, and no rule before it decides every version
// of mod.
func (p *Policy) NeedsVulns(mod string) bool {
	if p.Vulnerable == nil {
		return false
	}
	for _, r := range p.Rules {
		if r.everyVersion() && module.MatchPrefixPatterns(r.Module, mod) {
			return false
		}
	}
	return true
}
