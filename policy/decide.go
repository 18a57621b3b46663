package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// Built-in rule names of decisions that no rule of the policy made.
const (
	RuleDefault   = "default"
	RuleRetracted = "retracted"
	RuleCooldown  = "cooldown"
)

// Facts are what the gate knows about a module version beyond its name.
// The zero Facts know nothing.
type Facts struct {
	// Retracted reports that the module's latest go.mod retracts the version.
	Retracted bool `json:"retracted"`
	// RetractedKnown reports that Retracted was established; when false,
	// Retracted is ignored.
	RetractedKnown bool `json:"retracted_known"`
	// Rationale is the comment of the retract directive, if any.
	Rationale string `json:"rationale,omitempty"`
	// Published is the effective publication time the cooldown is measured
	// from: the later of InfoTime and FirstSeen (Decide takes the latest of
	// the three). Zero means unknown.
	Published time.Time `json:"published,omitzero"`
	// InfoTime is the Time of the version's .info. Whoever tags the
	// version chooses it, so it can be backdated. Zero means unknown.
	InfoTime time.Time `json:"info_time,omitzero"`
	// FirstSeen is when the gate's witness first saw a checksum-database
	// tree head holding the version's record: the gate's own observation,
	// which nobody outside can backdate. Zero when the record is unknown or
	// was already in the first tree head the gate witnessed.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Record is the index of the version's record in the checksum
	// database, when RecordKnown.
	Record      int64 `json:"record,omitempty"`
	RecordKnown bool  `json:"record_known,omitempty"`
	// BeforeWitness reports a record that was already in the first tree
	// head the gate witnessed: only its .info dates it.
	BeforeWitness bool `json:"before_witness,omitempty"`
	// Now is the time of the decision; the cooldown is measured up to it.
	// Zero means unknown (and no cooldown applies).
	Now time.Time `json:"now,omitzero"`
	// Commit is the version's commit hash as the upstream's .info names it
	// (Origin.Hash), lower-case; empty means unknown. A pseudo-version
	// names its own (see CommitOf).
	Commit string `json:"commit,omitempty"`
	// Vulns are the vulnerability database entries that affect the
	// version, when VulnsKnown (the gate holds a database).
	Vulns      []Vuln `json:"vulns,omitempty"`
	VulnsKnown bool   `json:"vulns_known,omitempty"`
}

// Input is what Decide decides on.
type Input struct {
	// Module is the module path, unescaped ("example.com/Upper").
	Module string
	// Version is a semantic version, unescaped. A rule with a versions
	// constraint never matches a version that is not valid semver.
	Version string
	Facts   Facts
}

// Decide decides whether the module version in may be served. It is a
// pure function of p and in, and applies, in this order (the first step
// that decides wins; Header says the same to people):
//
//  1. The rules, in order: the first rule whose Module pattern matches
//     in.Module (module.MatchPrefixPatterns) and whose Versions, if any,
//     match in.Version decides. An allow rule is final, so it exempts the
//     version from the steps below: this is how an operator lets a
//     retracted version through, or lets a fresh version skip the
//     cooldown, and it is why an allow rule should be as narrow as it can.
//  2. DenyRetracted: a version the facts say is retracted is denied (rule
//     "retracted").
//  3. Cooldown: a version published less than Cooldown before Facts.Now is
//     denied (rule "cooldown"). Its publication time is the latest of
//     Facts.Published, InfoTime and FirstSeen, and the reason says which
//     one it is.
//  4. Vulnerable: a version that a counted entry of the vulnerability
//     database affects (Facts.Vulns, see Vulnerable) is denied (rule
//     "vulnerable"); with action report (the default) the denial is
//     only reported.
//  5. Default (rule "default").
//
// Facts that are unknown (RetractedKnown false, Published or Now zero)
// deny nothing: the gate establishes them where it enforces. In report
// mode a denial is returned with Allowed true and WouldDeny true.
func (p *Policy) Decide(in Input) Decision {
	d := p.decide(in)
	if d.Action == Deny && (p.Mode == Report || (d.Rule == RuleVulnerable && p.Vulnerable.Action != VulnDeny)) {
		d.Allowed, d.WouldDeny = true, true
	}
	return d
}

func (p *Policy) decide(in Input) Decision {
	for _, r := range p.Rules {
		if !p.matches(r, in) {
			continue
		}
		reason := r.Reason
		if reason == "" {
			reason = fmt.Sprintf("%s by rule %s", verb(r.Action), r.ID)
		}
		if r.Commit != "" {
			hash, source := CommitOf(in)
			reason += fmt.Sprintf(" (commit %s, from %s)", hash, source)
		}
		return Decision{Allowed: r.Action != Deny, Action: r.Action, Rule: r.ID, Reason: reason}
	}
	f := in.Facts
	if p.DenyRetracted && f.RetractedKnown && f.Retracted {
		reason := "retracted by the module's authors"
		if r := oneLine(f.Rationale); r != "" {
			reason += ": " + r
		}
		return Decision{Action: Deny, Rule: RuleRetracted, Reason: reason}
	}
	published := f.effective()
	if p.Cooldown > 0 && !published.IsZero() && !f.Now.IsZero() {
		if age := f.Now.Sub(published); age < p.Cooldown {
			return Decision{Action: Deny, Rule: RuleCooldown, Reason: cooldownReason(f, published, p.Cooldown)}
		}
	}
	if d, ok := p.decideVuln(f); ok && (p.Vulnerable.Action == VulnDeny || p.Default != Deny) {
		return d // in report, a default deny is the stronger decision
	}
	if p.Default == Deny {
		return Decision{Action: Deny, Rule: RuleDefault, Reason: "no rule allows it and the policy's default is deny"}
	}
	reason := "no rule matched; the policy's default is allow"
	if p.Cooldown > 0 && (published.IsZero() || f.Now.IsZero()) {
		reason += " (publication time unknown: the cooldown does not hold it back)"
	}
	return Decision{Allowed: true, Action: Allow, Rule: RuleDefault, Reason: reason}
}

// effective is the latest of the publication times the facts hold.
func (f Facts) effective() time.Time {
	t := f.Published
	for _, u := range []time.Time{f.InfoTime, f.FirstSeen} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// cooldownReason says how old a version is within the cooldown, and where
// its time comes from: the witness's first sight of its record, or the
// .info (with what the other source says).
func cooldownReason(f Facts, published time.Time, cooldown time.Duration) string {
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	within := fmt.Sprintf("within the %s cooldown", FormatDuration(cooldown))
	if !f.FirstSeen.IsZero() && f.FirstSeen.Equal(published) {
		reason := fmt.Sprintf("first seen in the checksum database %s (%s, record %d), %s",
			ago(f.Now.Sub(published)), stamp(published), f.Record, within)
		if !f.InfoTime.IsZero() {
			reason += "; its .info claims " + stamp(f.InfoTime)
		}
		return reason
	}
	source := ""
	if f.InfoTime.Equal(published) {
		source = ", its .info Time"
	}
	reason := fmt.Sprintf("published %s (%s%s), %s", ago(f.Now.Sub(published)), stamp(published), source, within)
	switch {
	case !f.FirstSeen.IsZero():
		reason += fmt.Sprintf("; first seen in the checksum database %s (record %d)", stamp(f.FirstSeen), f.Record)
	case f.BeforeWitness:
		reason += fmt.Sprintf("; record %d predates the gate's first witnessed tree head, so only its .info dates it",
			f.Record)
	}
	return reason
}

// matches reports whether rule r of p applies to the input's module and
// version (and, for a commit rule, its commit). Its version constraint was
// parsed when p was loaded; a policy built in code (not through Parse or a
// File) has it parsed here.
func (p *Policy) matches(r Rule, in Input) bool {
	if !module.MatchPrefixPatterns(r.Module, in.Module) {
		return false
	}
	if r.Commit != "" {
		hash, _ := CommitOf(in)
		return SameCommit(r.Commit, hash)
	}
	if r.Versions == "" {
		return true
	}
	c, ok := p.constraints[r.Versions]
	if !ok {
		var err error
		if c, err = ParseConstraint(r.Versions); err != nil {
			return false
		}
	}
	return c.Match(in.Version)
}

// everyVersion reports whether the rule matches every version of the
// modules it matches: no versions constraint, no commit.
func (r Rule) everyVersion() bool { return r.Versions == "" && r.Commit == "" }

// CommitOf returns the commit hash of in's version as far as it is known,
// and where it comes from: the .info's Origin.Hash (Facts.Commit), else
// the hash prefix a pseudo-version names. "" if unknown, as for a tagged
// version whose upstream's .info has no Origin.
func CommitOf(in Input) (hash, source string) {
	if in.Facts.Commit != "" {
		return strings.ToLower(in.Facts.Commit), "Origin.Hash of the .info"
	}
	if module.IsPseudoVersion(in.Version) {
		if rev, err := module.PseudoVersionRev(in.Version); err == nil {
			return strings.ToLower(rev), "the pseudo-version"
		}
	}
	return "", ""
}

// SameCommit reports whether two commit hashes (or hash prefixes) name the
// same commit: the shorter, of at least MinCommitLen digits, is a prefix
// of the longer.
func SameCommit(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	return len(a) >= MinCommitLen && strings.HasPrefix(b, a)
}

// Needs reports which facts Decide could use for a version of mod, so that
// the gate fetches nothing it does not need. When a rule without a
// versions constraint or commit matches mod, every version of mod is
// decided by that rule or one before it, and no facts are needed;
// otherwise retraction facts are needed if DenyRetracted is on, publish
// times if a Cooldown is. NeedsCommit says whether the commit is.
func (p *Policy) Needs(mod string) (retractions, published bool) {
	for _, r := range p.Rules {
		if module.MatchPrefixPatterns(r.Module, mod) && r.everyVersion() {
			return false, false
		}
	}
	return p.DenyRetracted, p.Cooldown > 0
}

// NeedsCommit reports whether a commit rule could decide a version of mod
// (one that no earlier rule decides for every version), so that the gate
// reads the commit of tagged versions from their .info.
func (p *Policy) NeedsCommit(mod string) bool {
	for _, r := range p.Rules {
		if !module.MatchPrefixPatterns(r.Module, mod) {
			continue
		}
		if r.Commit != "" {
			return true
		}
		if r.everyVersion() {
			return false
		}
	}
	return false
}

// DecideHost decides a CONNECT to host:port by the egress rules: the first
// rule whose host and ports match decides, else egress.default (deny when
// empty). host is matched lower-cased and without a trailing dot;
// "*.example.com" matches its subdomains, not example.com. A rule without
// ports applies to port 443 only. In egress report mode a denial is
// returned with Allowed true and WouldDeny true.
func (p *Policy) DecideHost(host string, port int) Decision {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	d := p.decideHost(host, port)
	if d.Action == Deny && p.Egress.Mode == Report {
		d.Allowed, d.WouldDeny = true, true
	}
	return d
}

func (p *Policy) decideHost(host string, port int) Decision {
	for _, r := range p.Egress.Rules {
		if !r.matches(host, port) {
			continue
		}
		reason := r.Reason
		if reason == "" {
			reason = fmt.Sprintf("%s by egress rule %s", verb(r.Action), r.ID)
		}
		return Decision{Allowed: r.Action != Deny, Action: r.Action, Rule: r.ID, Reason: reason}
	}
	if p.Egress.Default == Allow {
		return Decision{
			Allowed: true,
			Action:  Allow,
			Rule:    RuleDefault,
			Reason:  "no egress rule matched; the egress default is allow",
		}
	}
	return Decision{Action: Deny, Rule: RuleDefault, Reason: fmt.Sprintf("no egress rule allows %s:%d", host, port)}
}

// matches reports whether the host rule applies to host:port.
func (r HostRule) matches(host string, port int) bool {
	if len(r.Ports) == 0 {
		if port != 443 {
			return false
		}
	} else if !slices.Contains(r.Ports, port) {
		return false
	}
	if parent, ok := strings.CutPrefix(r.Host, "*."); ok {
		return strings.HasSuffix(host, "."+parent)
	}
	return host == r.Host
}

func verb(a Action) string {
	if a == Deny {
		return "denied"
	}
	return "allowed"
}

// oneLine keeps the first line of s, trimmed and at most 200 bytes.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return s
}

// ago formats an age to the minute (to the second under a minute).
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "in the future"
	case d < time.Minute:
		return d.Round(time.Second).String() + " ago"
	}
	return FormatDuration(d.Round(time.Minute)) + " ago"
}
