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
	// Published is when the version was published (its .info Time); zero
	// means unknown.
	Published time.Time `json:"published,omitzero"`
	// Now is the time of the decision; the cooldown is measured up to it.
	// Zero means unknown (and no cooldown applies).
	Now time.Time `json:"now,omitzero"`
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
//     denied (rule "cooldown").
//  4. Default (rule "default").
//
// Facts that are unknown (RetractedKnown false, Published or Now zero)
// deny nothing: the gate establishes them where it enforces. In report
// mode a denial is returned with Allowed true and WouldDeny true.
func (p *Policy) Decide(in Input) Decision {
	d := p.decide(in)
	if d.Action == Deny && p.Mode == Report {
		d.Allowed, d.WouldDeny = true, true
	}
	return d
}

func (p *Policy) decide(in Input) Decision {
	for _, r := range p.Rules {
		if !p.matches(r, in.Module, in.Version) {
			continue
		}
		reason := r.Reason
		if reason == "" {
			reason = fmt.Sprintf("%s by rule %s", verb(r.Action), r.ID)
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
	if p.Cooldown > 0 && !f.Published.IsZero() && !f.Now.IsZero() {
		if age := f.Now.Sub(f.Published); age < p.Cooldown {
			reason := fmt.Sprintf("published %s (%s), within the %s cooldown",
				ago(age), f.Published.UTC().Format(time.RFC3339), FormatDuration(p.Cooldown))
			return Decision{Action: Deny, Rule: RuleCooldown, Reason: reason}
		}
	}
	if p.Default == Deny {
		return Decision{Action: Deny, Rule: RuleDefault, Reason: "no rule allows it and the policy's default is deny"}
	}
	return Decision{
		Allowed: true,
		Action:  Allow,
		Rule:    RuleDefault,
		Reason:  "no rule matched; the policy's default is allow",
	}
}

// matches reports whether rule r of p applies to module@version. Its
// version constraint was parsed when p was loaded; a policy built in code
// (not through Parse or a File) has it parsed here.
func (p *Policy) matches(r Rule, mod, version string) bool {
	if !module.MatchPrefixPatterns(r.Module, mod) {
		return false
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
	return c.Match(version)
}

// Needs reports which facts Decide could use for a version of mod, so that
// the gate fetches nothing it does not need. When a rule without a
// versions constraint matches mod, every version of mod is decided by that
// rule or one before it, and no facts are needed; otherwise retraction
// facts are needed if DenyRetracted is on, publish times if a Cooldown is.
func (p *Policy) Needs(mod string) (retractions, published bool) {
	for _, r := range p.Rules {
		if module.MatchPrefixPatterns(r.Module, mod) && r.Versions == "" {
			return false, false
		}
	}
	return p.DenyRetracted, p.Cooldown > 0
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
