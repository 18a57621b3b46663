package policy

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modgate/modgate/internal/dnsname"
)

// ErrInvalid is wrapped by every *ValidationError: the policy (or a rule)
// is not one modgate will enforce.
var ErrInvalid = errors.New("invalid policy")

// ValidationError names what is wrong with a policy and where.
type ValidationError struct {
	// Field is the path of the offending field, such as "rules[2].versions"
	// (or "versions" when a single rule is validated). Empty for the whole
	// document.
	Field string `json:"field,omitempty"`
	// Line is the line in the YAML source, when known (0 otherwise).
	Line int `json:"line,omitempty"`
	// Problem says what is wrong, for a person.
	Problem string `json:"problem"`
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("policy: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Limits on the free text of a policy, so that a denial stays within what
// the go command shows of an error body (648 bytes).
const (
	// MaxIDLen is the longest rule id.
	MaxIDLen = 64
	// MaxReasonLen is the longest reason, in bytes.
	MaxReasonLen = 300
	// MaxRules is the most rules a policy may hold (module and host rules).
	MaxRules = 10000
	// MaxPatternLen is the longest module pattern (a rule's module, an
	// entry of private), in bytes: room for a pasted GONOSUMDB list.
	MaxPatternLen = 4096
	// MaxVersionsLen is the longest version constraint, in bytes.
	MaxVersionsLen = 1024
	// MaxPorts is the most ports a host rule may list.
	MaxPorts = 64
	// MinCommitLen is the shortest commit of a rule: the 12 hex digits a
	// pseudo-version carries.
	MinCommitLen = 12
	// MaxCommitLen is the longest commit of a rule (a SHA-256 hash).
	MaxCommitLen = 64
)

// Rule is one module rule: it matches a module path pattern and,
// optionally, a version constraint.
type Rule struct {
	// ID names the rule in decisions, error messages and the audit log.
	ID string `yaml:"id" json:"id"`
	// Action is allow or deny.
	Action Action `yaml:"action" json:"action"`
	// Module is a pattern with the semantics of GOPRIVATE: a comma list of
	// globs (path.Match syntax) each matching a path prefix, element by
	// element, as module.MatchPrefixPatterns does.
	Module string `yaml:"module" json:"module"`
	// Versions is a version constraint (see ParseConstraint); empty means
	// every version. It matches version strings: v1.2.0 and a
	// pseudo-version of the same commit are different versions to it.
	Versions string `yaml:"versions,omitempty" json:"versions,omitempty"`
	// Commit, instead of Versions, matches every version whose commit is
	// known to be this one: 12 to 64 lower-case hex digits, compared on
	// the shorter of it and the known hash (see CommitOf).
	Commit string `yaml:"commit,omitempty" json:"commit,omitempty"`
	// Reason is free text shown with a denial, such as a CVE or a ticket.
	// Required for deny rules.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// HostRule is one egress rule: which other hosts may be reached through
// the gate with CONNECT.
type HostRule struct {
	// ID names the rule.
	ID string `yaml:"id" json:"id"`
	// Action is allow or deny.
	Action Action `yaml:"action" json:"action"`
	// Host is a lower-case DNS name ("example.com", matching only itself)
	// or "*." and a name ("*.example.com", matching its subdomains but not
	// example.com itself).
	Host string `yaml:"host" json:"host"`
	// Ports are the ports the rule applies to; empty means 443 only.
	Ports []int `yaml:"ports,omitempty" json:"ports,omitempty"`
	// Reason is free text; required for deny rules.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// Egress is the policy for CONNECTs to hosts the gate does not intercept.
type Egress struct {
	// Mode is enforce or report; empty means enforce.
	Mode Mode `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Default applies when no rule matches. Empty means deny: a gate
	// tunnels nothing it was not told to.
	Default Action `yaml:"default,omitempty" json:"default,omitempty"`
	// Rules are tried in order; the first match decides.
	Rules []HostRule `yaml:"rules,omitempty" json:"rules,omitempty"`
}

// Policy is modgate's module policy and egress policy. Decide documents
// the order in which its parts are applied. The zero Policy allows
// everything.
//
// Its JSON form (MarshalJSON) uses the YAML field names, with the cooldown
// as a duration string such as "72h".
type Policy struct {
	// Mode is enforce or report; empty means enforce.
	Mode Mode
	// Default applies when nothing else decides; empty means allow.
	Default Action
	// DenyRetracted refuses versions retracted by their module's authors.
	DenyRetracted bool
	// Cooldown refuses versions published less than this long ago;
	// 0 means no cooldown.
	Cooldown time.Duration
	// Private lists module path patterns (as GONOSUMDB) that skip the
	// public checksum database.
	Private []string
	// Rules are the module rules, in order; the first match decides.
	Rules []Rule
	// Egress is the policy for other hosts.
	Egress Egress
	// Vulnerable is the policy for versions with known vulnerabilities;
	// nil checks none.
	Vulnerable *Vulnerable

	// constraints are the rules' Versions, parsed once when the policy is
	// loaded (normalize), by their text. Never modified after: a Clone
	// shares it until it is normalized again.
	constraints map[string]Constraint
}

// Clone returns a deep copy of p.
func (p *Policy) Clone() *Policy {
	c := *p
	c.Private = slices.Clone(p.Private)
	c.Rules = slices.Clone(p.Rules)
	c.Egress.Rules = slices.Clone(p.Egress.Rules)
	c.Vulnerable = p.Vulnerable.clone()
	for i := range c.Egress.Rules {
		c.Egress.Rules[i].Ports = slices.Clone(c.Egress.Rules[i].Ports)
	}
	return &c
}

// Rule returns the index of the module rule with the given id, or -1.
func (p *Policy) Rule(id string) int {
	return slices.IndexFunc(p.Rules, func(r Rule) bool { return r.ID == id })
}

// Validate reports everything wrong with p as *ValidationError values
// joined with errors.Join (errors.As finds the first): rule ids unique
// across module and host rules and made of [a-zA-Z0-9._-]; actions allow or
// deny; module patterns valid GOPRIVATE patterns; version constraints that
// parse; a reason for every deny rule; a valid mode and default (empty
// means enforce and allow; for egress, enforce and deny).
func (p *Policy) Validate() error {
	var errs []error
	add := func(field, problem string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Problem: fmt.Sprintf(problem, args...)})
	}
	checkMode(add, "mode", p.Mode)
	checkAction(add, "default", p.Default, true)
	if p.Cooldown < 0 {
		add("cooldown", "must not be negative")
	}
	for i, pat := range p.Private {
		if err := checkPattern(pat); err != nil {
			add(fmt.Sprintf("private[%d]", i), "%v", err)
		}
	}
	if n := len(p.Rules) + len(p.Egress.Rules); n > MaxRules {
		add("rules", "%d rules; at most %d are allowed", n, MaxRules)
	}
	seen := map[string]string{}
	for i, r := range p.Rules {
		field := fmt.Sprintf("rules[%d]", i)
		errs = append(errs, prefixed(field, r.Validate())...)
		checkUnique(add, seen, field, r.ID)
	}
	p.Vulnerable.validate(add)
	checkMode(add, "egress.mode", p.Egress.Mode)
	checkAction(add, "egress.default", p.Egress.Default, true)
	for i, r := range p.Egress.Rules {
		field := fmt.Sprintf("egress.rules[%d]", i)
		errs = append(errs, prefixed(field, r.Validate())...)
		checkUnique(add, seen, field, r.ID)
	}
	return errors.Join(errs...)
}

// Validate reports what is wrong with the rule on its own (not whether
// its id is unique in a policy). Field names are relative to the rule.
func (r Rule) Validate() error {
	var errs []error
	add := func(field, problem string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Problem: fmt.Sprintf(problem, args...)})
	}
	checkID(add, r.ID)
	checkAction(add, "action", r.Action, false)
	if r.Module == "" {
		add("module", "a module path pattern is required (use \"*\" for every module)")
	} else if err := checkPattern(r.Module); err != nil {
		add("module", "%v", err)
	}
	checkCommit(add, r)
	switch {
	case len(r.Versions) > MaxVersionsLen:
		add("versions", "%d bytes; at most %d are allowed", len(r.Versions), MaxVersionsLen)
	case r.Versions != "":
		if _, err := ParseConstraint(r.Versions); err != nil {
			add("versions", "%v", err)
		}
	}
	checkReason(add, r.Action, r.Reason)
	return errors.Join(errs...)
}

// Validate reports what is wrong with the host rule on its own.
func (r HostRule) Validate() error {
	var errs []error
	add := func(field, problem string, args ...any) {
		errs = append(errs, &ValidationError{Field: field, Problem: fmt.Sprintf(problem, args...)})
	}
	checkID(add, r.ID)
	checkAction(add, "action", r.Action, false)
	if err := checkHostPattern(r.Host); err != nil {
		add("host", "%v", err)
	}
	if len(r.Ports) > MaxPorts {
		add("ports", "%d ports; at most %d are allowed", len(r.Ports), MaxPorts)
	}
	for i, port := range r.Ports {
		if port < 1 || port > 65535 {
			add(fmt.Sprintf("ports[%d]", i), "port %d is not in 1-65535", port)
		}
	}
	checkReason(add, r.Action, r.Reason)
	return errors.Join(errs...)
}

type addFunc func(field, problem string, args ...any)

// prefixed returns the *ValidationErrors joined in err with prefix added
// to their fields.
func prefixed(prefix string, err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range unjoin(err) {
		var ve *ValidationError
		if errors.As(e, &ve) {
			c := *ve
			c.Field = prefix + "." + c.Field
			e = &c
		}
		out = append(out, e)
	}
	return out
}

// Problems returns the *ValidationErrors joined in err (by Validate or
// Parse), in order; nil if there are none.
func Problems(err error) []*ValidationError {
	var out []*ValidationError
	for _, e := range unjoin(err) {
		var ve *ValidationError
		if errors.As(e, &ve) {
			out = append(out, ve)
		}
	}
	return out
}

// unjoin returns the errors joined in err (or err alone).
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func checkMode(add addFunc, field string, m Mode) {
	if m != "" && m != Enforce && m != Report {
		add(field, "%q is not a mode: want enforce or report", m)
	}
}

func checkAction(add addFunc, field string, a Action, emptyOK bool) {
	if a == "" && emptyOK {
		return
	}
	if a != Allow && a != Deny {
		add(field, "%q is not an action: want allow or deny", a)
	}
}

func checkUnique(add addFunc, seen map[string]string, field, id string) {
	if id == "" {
		return
	}
	if prev, ok := seen[id]; ok {
		add(field+".id", "duplicate id %q (also %s)", id, prev)
		return
	}
	seen[id] = field
}

// checkID requires an id of 1 to MaxIDLen bytes of [a-zA-Z0-9._-].
func checkID(add addFunc, id string) {
	switch {
	case id == "":
		add("id", "an id is required")
	case len(id) > MaxIDLen:
		add("id", "longer than %d bytes", MaxIDLen)
	case strings.IndexFunc(id, func(r rune) bool {
		return !(r < utf8.RuneSelf && (r == '.' || r == '_' || r == '-' ||
			'0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'))
	}) >= 0:
		add("id", "%q: use only letters, digits, '.', '_' and '-'", id)
	}
}

// checkCommit requires a commit of MinCommitLen to MaxCommitLen lower-case
// hex digits, and not together with versions.
func checkCommit(add addFunc, r Rule) {
	switch c := r.Commit; {
	case c == "":
	case r.Versions != "":
		add("commit", "a rule has versions or commit, not both")
	case len(c) < MinCommitLen || len(c) > MaxCommitLen || strings.Trim(c, "0123456789abcdef") != "":
		add("commit", "%q: want %d to %d lower-case hex digits of a commit hash",
			truncate(c, 80), MinCommitLen, MaxCommitLen)
	}
}

// checkReason requires a reason for deny rules, and a reason that is one
// line of printable text of at most MaxReasonLen bytes.
func checkReason(add addFunc, a Action, reason string) {
	switch {
	case a == Deny && strings.TrimSpace(reason) == "":
		add("reason", "a deny rule needs a reason (a CVE, a ticket, a sentence)")
	case len(reason) > MaxReasonLen:
		add("reason", "longer than %d bytes", MaxReasonLen)
	case !printable(reason):
		add("reason", "must be one line of printable text")
	case reason != strings.TrimSpace(reason):
		add("reason", "must not start or end with spaces")
	}
}

// printable reports whether s is valid UTF-8 made of graphic characters
// and spaces only (no newlines, tabs or control characters).
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}

// checkPattern checks a GOPRIVATE-style comma list of path globs of at
// most MaxPatternLen bytes of printable ASCII (module paths are ASCII, so
// any other character could never match).
func checkPattern(pattern string) error {
	if len(pattern) > MaxPatternLen {
		return fmt.Errorf("%d bytes; at most %d are allowed", len(pattern), MaxPatternLen)
	}
	if i := strings.IndexFunc(pattern, func(r rune) bool { return r < ' ' || r > '~' }); i >= 0 {
		return fmt.Errorf("%q: module paths are printable ASCII, so a pattern with other characters never matches",
			truncate(pattern, 64))
	}
	for _, glob := range strings.Split(pattern, ",") {
		switch {
		case glob == "":
			return fmt.Errorf("%q: empty pattern in the list", pattern)
		case strings.TrimSpace(glob) != glob || strings.ContainsFunc(glob, unicode.IsSpace):
			return fmt.Errorf("%q: patterns contain no spaces", glob)
		case strings.HasPrefix(glob, "/") || strings.HasSuffix(glob, "/") || strings.Contains(glob, "//"):
			return fmt.Errorf("%q: not a module path pattern (leading, trailing or double slash)", glob)
		}
		if _, err := path.Match(glob, ""); err != nil {
			return fmt.Errorf("%q: bad glob: %v", glob, err)
		}
	}
	return nil
}

// truncate shortens s to at most n bytes (at a rune boundary) for messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// checkHostPattern checks "example.com" or "*.example.com".
func checkHostPattern(host string) error {
	name := strings.TrimPrefix(host, "*.")
	if name == "" {
		return errors.New("a host name is required, such as example.com or *.example.com")
	}
	if len(name) > 253 {
		return fmt.Errorf("%q: longer than 253 bytes", host)
	}
	for label := range strings.SplitSeq(name, ".") {
		if !dnsname.Label(label) {
			return fmt.Errorf(
				"%q: bad label %q: want a lower-case DNS name, or *. and one (no port, no trailing dot)",
				host,
				label,
			)
		}
	}
	if _, err := strconv.Atoi(strings.ReplaceAll(name, ".", "")); err == nil {
		return fmt.Errorf("%q: IP addresses are not host names", host)
	}
	return nil
}
