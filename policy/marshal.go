package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Header is the comment at the top of every policy file modgate writes.
// It states the evaluation order that Decide implements.
const Header = `# modgate policy.
#
# How a module version is decided; the first step that decides wins:
#   1. rules, in order: the first rule whose module pattern and versions both
#      match decides (allow or deny). A matching allow rule is final: it
#      exempts the version from deny_retracted and cooldown.
#   2. deny_retracted: true denies a version its module's authors retracted
#      (retract directives in the go.mod of the module's latest version).
#   3. cooldown: denies a version published less than this long ago, such as
#      72h or 3d. Published is the later of its .info Time (which its author
#      chooses) and when the gate first saw its checksum-database record.
#   4. vulnerable: a version that an entry of the Go vulnerability database
#      affects: action report (the default) logs and audits it, deny refuses
#      it. ignore: [GO-2021-0113] never counts those entries; reviewed_only:
#      true leaves out entries marked UNREVIEWED. No section: not checked.
#   5. default: allow or deny.
# A fact modgate could not establish (a retraction, a publish time) denies
# nothing. mode: report lets everything through, and logs and audits what
# would have been denied.
#
# module: patterns as in GOPRIVATE: comma-separated globs, matched element by
#   element against a prefix of the module path (example.com/* matches
#   example.com/a and example.com/a/b).
# versions: "v1.2.3" (exactly), "<v1.2.0", ">=v1.0.0 <v2.0.0" (spaces: and),
#   "v1.0.0, v1.1.0" or a YAML list (commas: or). Operators: < <= > >= =.
#   Pseudo-versions compare as the pre-releases they are (a commit after
#   v1.2.3 is above v1.2.3, below v1.2.4); +incompatible compares as its
#   version. Versions match version strings: a deny of v1.2.0 does not
#   match a pseudo-version of the same commit.
# commit: instead of versions, a commit hash (12 to 64 hex digits) that
#   matches every version of that commit whose commit modgate knows: from a
#   pseudo-version's hash, or the Origin.Hash of the upstream's .info.
# private: module patterns that skip the public checksum database.
# egress: CONNECTs to other hosts: egress.rules in order, then
#   egress.default (deny when not set).
#
# modgate rewrites this file when the policy changes through its admin API
# or "modgate policy"; it keeps this header, not other comments.
`

// Marshal returns p as a YAML document that starts with Header. Parse
// reads it back as an equal (normalized) policy.
func (p *Policy) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(Header)
	buf.WriteString("\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p.doc()); err != nil {
		return nil, fmt.Errorf("policy: encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("policy: encoding YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// doc returns the document form of p, leaving out an egress section that
// says nothing beyond the defaults.
func (p *Policy) doc() *doc {
	c := p.Clone()
	c.normalize()
	d := &doc{Mode: c.Mode, Default: c.Default, DenyRetracted: c.DenyRetracted, Private: c.Private, Rules: c.Rules}
	if d.Rules == nil {
		d.Rules = []Rule{}
	}
	if c.Cooldown != 0 {
		d.Cooldown = FormatDuration(c.Cooldown)
	}
	d.Vulnerable = c.Vulnerable
	if c.Egress.Mode != Enforce || c.Egress.Default != Deny || len(c.Egress.Rules) > 0 {
		d.Egress = &c.Egress
	}
	return d
}

// MarshalJSON encodes p with the field names of its YAML form.
func (p *Policy) MarshalJSON() ([]byte, error) {
	return json.Marshal(p.doc())
}

// UnmarshalJSON decodes the JSON form of a policy, refusing unknown
// fields. It normalizes but does not validate: call Validate.
func (p *Policy) UnmarshalJSON(data []byte) error {
	var d doc
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	q, err := d.policy()
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

// UnmarshalJSON decodes a rule, refusing unknown fields. Versions may be a
// string or a list of strings (joined with ", ").
func (r *Rule) UnmarshalJSON(data []byte) error {
	var raw struct {
		ID       string          `json:"id"`
		Action   Action          `json:"action"`
		Module   string          `json:"module"`
		Versions json.RawMessage `json:"versions"`
		Commit   string          `json:"commit"`
		Reason   string          `json:"reason"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("rule: %w", err)
	}
	*r = Rule{ID: raw.ID, Action: raw.Action, Module: raw.Module, Commit: raw.Commit, Reason: raw.Reason}
	if len(raw.Versions) == 0 || string(raw.Versions) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw.Versions, &r.Versions); err == nil {
		return nil
	}
	var list []string
	if err := json.Unmarshal(raw.Versions, &list); err != nil {
		return &ValidationError{Field: "versions", Problem: "want a string or a list of strings"}
	}
	for i, v := range list {
		if i > 0 {
			r.Versions += ", "
		}
		r.Versions += v
	}
	return nil
}

// DefaultFile returns the policy file that modgate init writes: enforce,
// allow by default, no rules, and commented examples of every setting.
func DefaultFile() []byte {
	return []byte(Header + `
mode: enforce          # or report: refuse nothing, log and audit would-be denials
default: allow         # when no rule, retraction or cooldown decides
deny_retracted: false  # true: refuse versions their authors retracted
# cooldown: 72h        # refuse versions published less than 72 hours ago
# private:             # modules that skip the public checksum database
#   - corp.example.com/*
rules: []
# rules:
#   - id: cve-2099-0001
#     action: deny
#     module: example.com/bad
#     versions: "<v1.2.0"
#     reason: CVE-2099-0001, fixed in v1.2.0
#   - id: corp
#     action: allow
#     module: corp.example.com/*
#     reason: our own modules are exempt from the cooldown
#   - id: no-v2
#     action: deny
#     module: example.com/lib
#     versions: [">=v2.0.0 <v2.3.0", v2.5.1]
#     reason: TICKET-123
#   - id: backdoor
#     action: deny
#     module: example.com/m
#     commit: 0123456789ab   # every version of this commit (pseudo-versions; tags whose .info names it)
#     reason: TICKET-124
# vulnerable:          # versions with known vulnerabilities (the gate's vulndb mirror)
#   action: report     # or deny
#   ignore: [GO-2021-0113]
#   reviewed_only: false
# egress:              # CONNECTs to hosts modgate does not intercept
#   default: deny
#   rules:
#     - id: github
#       action: allow
#       host: github.com
#       ports: [443]
#       reason: git fetches of private modules
`)
}
