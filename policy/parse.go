package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest policy document Parse accepts.
const MaxFileSize = 4 << 20

// doc is the YAML (and JSON) form of a Policy.
type doc struct {
	Mode          Mode        `yaml:"mode,omitempty" json:"mode,omitempty"`
	Default       Action      `yaml:"default,omitempty" json:"default,omitempty"`
	DenyRetracted bool        `yaml:"deny_retracted" json:"deny_retracted"`
	Cooldown      string      `yaml:"cooldown,omitempty" json:"cooldown,omitempty"`
	Private       []string    `yaml:"private,omitempty" json:"private,omitempty"`
	Rules         []Rule      `yaml:"rules" json:"rules"`
	Egress        *Egress     `yaml:"egress,omitempty" json:"egress,omitempty"`
	Vulnerable    *Vulnerable `yaml:"vulnerable,omitempty" json:"vulnerable,omitempty"`
}

// The keys each mapping of a policy document may have.
var (
	policyKeys   = []string{"mode", "default", "deny_retracted", "cooldown", "private", "rules", "egress", "vulnerable"}
	ruleKeys     = []string{"id", "action", "module", "versions", "commit", "reason"}
	egressKeys   = []string{"mode", "default", "rules"}
	hostRuleKeys = []string{"id", "action", "host", "ports", "reason"}
	vulnKeys     = []string{"action", "ignore", "reviewed_only"}
)

// Parse parses and validates a policy document: YAML, or JSON (which is
// YAML too). It is strict: unknown or repeated fields are errors, and so
// are an empty document and more than one document. Errors are
// *ValidationError values (joined when there are several) naming the field
// and, where known, the line. The result is normalized: an empty mode is
// enforce, an empty default allow, an empty egress default deny, and empty
// lists are nil.
func Parse(data []byte) (*Policy, error) {
	if len(data) > MaxFileSize {
		return nil, &ValidationError{Problem: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	root, err := decodeNode(data)
	if err != nil {
		return nil, err
	}
	w := &walker{lines: map[string]int{}}
	w.policy(root)
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}
	var d doc
	if err := root.Decode(&d); err != nil {
		return nil, w.typeErrors(err)
	}
	p, err := d.policy()
	if err != nil {
		return nil, w.annotate(err)
	}
	if err := p.Validate(); err != nil {
		return nil, w.annotate(err)
	}
	return p, nil
}

// decodeNode decodes the one YAML document in data to its top node.
func decodeNode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ValidationError{Problem: "empty policy document (write at least \"mode: enforce\")"}
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(err)
		}
		return nil, &ValidationError{Line: next.Line, Problem: "more than one YAML document"}
	}
	top := &root
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind != yaml.MappingNode {
		return nil, &ValidationError{Line: top.Line, Problem: "a policy is a mapping (mode:, default:, rules: ...)"}
	}
	return top, nil
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 error into a *ValidationError.
func syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &ValidationError{Line: n, Problem: "YAML: " + m[2]}
	}
	return &ValidationError{Problem: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// walker checks a document's keys before it is decoded, rewrites a YAML
// list of versions into one comma-separated constraint, and remembers the
// line of every field for error messages.
type walker struct {
	lines map[string]int
	errs  []error
}

func (w *walker) fail(field string, line int, format string, args ...any) {
	w.errs = append(w.errs, &ValidationError{Field: field, Line: line, Problem: fmt.Sprintf(format, args...)})
}

// mapping checks the keys of node against allowed and returns the values
// by key.
func (w *walker) mapping(field string, node *yaml.Node, allowed []string) map[string]*yaml.Node {
	if node.Kind != yaml.MappingNode {
		w.fail(field, node.Line, "want a mapping")
		return nil
	}
	w.lines[field] = node.Line
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		sub := joinField(field, k.Value)
		switch {
		case k.Kind != yaml.ScalarNode || !contains(allowed, k.Value):
			w.fail(sub, k.Line, "unknown field (known: %s)", strings.Join(allowed, ", "))
		case out[k.Value] != nil:
			w.fail(sub, k.Line, "repeated field")
		default:
			out[k.Value] = v
			w.lines[sub] = k.Line
		}
	}
	return out
}

func (w *walker) policy(node *yaml.Node) {
	m := w.mapping("", node, policyKeys)
	if rules := m["rules"]; rules != nil {
		w.list("rules", rules, func(field string, item *yaml.Node) { w.rule(field, item) })
	}
	if v := m["vulnerable"]; v != nil && !isNull(v) {
		w.mapping("vulnerable", v, vulnKeys)
	}
	if eg := m["egress"]; eg != nil && !isNull(eg) {
		em := w.mapping("egress", eg, egressKeys)
		if rules := em["rules"]; rules != nil {
			w.list("egress.rules", rules, func(field string, item *yaml.Node) {
				w.mapping(field, item, hostRuleKeys)
			})
		}
	}
}

func (w *walker) list(field string, node *yaml.Node, each func(string, *yaml.Node)) {
	if isNull(node) {
		return
	}
	if node.Kind != yaml.SequenceNode {
		w.fail(field, node.Line, "want a list")
		return
	}
	for i, item := range node.Content {
		each(fmt.Sprintf("%s[%d]", field, i), item)
	}
}

func (w *walker) rule(field string, node *yaml.Node) {
	m := w.mapping(field, node, ruleKeys)
	v := m["versions"]
	if v == nil || v.Kind != yaml.SequenceNode {
		return
	}
	parts := make([]string, 0, len(v.Content))
	for _, item := range v.Content {
		if item.Kind != yaml.ScalarNode {
			w.fail(field+".versions", item.Line, "a list of versions holds strings")
			return
		}
		parts = append(parts, item.Value)
	}
	*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: strings.Join(parts, ", "), Line: v.Line, Column: v.Column}
}

var typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// typeErrors turns the errors of decoding a checked document (wrong
// types) into *ValidationErrors naming the field on that line.
func (w *walker) typeErrors(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(err)
	}
	var errs []error
	for _, msg := range te.Errors {
		ve := &ValidationError{Problem: msg}
		if m := typeErrorLine.FindStringSubmatch(msg); m != nil {
			ve.Line, _ = strconv.Atoi(m[1])
			ve.Problem = m[2]
			ve.Field = w.fieldAt(ve.Line)
		}
		errs = append(errs, ve)
	}
	return errors.Join(errs...)
}

// fieldAt returns the longest field path whose key is on line.
func (w *walker) fieldAt(line int) string {
	best := ""
	for f, l := range w.lines {
		if l == line && len(f) > len(best) {
			best = f
		}
	}
	return best
}

// annotate adds line numbers to the *ValidationErrors joined in err.
func (w *walker) annotate(err error) error {
	var out []error
	for _, e := range unjoin(err) {
		var ve *ValidationError
		if errors.As(e, &ve) && ve.Line == 0 {
			c := *ve
			c.Line = w.lineOf(c.Field)
			e = &c
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// lineOf returns the line of field or of its nearest ancestor.
func (w *walker) lineOf(field string) int {
	for field != "" {
		if l, ok := w.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

func joinField(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// policy converts a decoded document to a normalized Policy.
func (d *doc) policy() (*Policy, error) {
	p := &Policy{Mode: d.Mode, Default: d.Default, DenyRetracted: d.DenyRetracted, Private: d.Private, Rules: d.Rules}
	if d.Egress != nil {
		p.Egress = *d.Egress
	}
	p.Vulnerable = d.Vulnerable.clone()
	if d.Cooldown != "" {
		c, err := ParseDuration(d.Cooldown)
		if err != nil {
			return nil, &ValidationError{Field: "cooldown", Problem: err.Error()}
		}
		p.Cooldown = c
	}
	p.normalize()
	return p, nil
}

// normalize fills in the defaults of empty fields, trims and parses
// version constraints and makes empty lists nil, so that equal policies
// compare equal.
func (p *Policy) normalize() {
	if p.Mode == "" {
		p.Mode = Enforce
	}
	if p.Default == "" {
		p.Default = Allow
	}
	if p.Egress.Mode == "" {
		p.Egress.Mode = Enforce
	}
	if p.Egress.Default == "" {
		p.Egress.Default = Deny
	}
	p.constraints = nil // a new map: a Clone may share the old one
	for i := range p.Rules {
		v := strings.TrimSpace(p.Rules[i].Versions)
		p.Rules[i].Versions = v
		if _, done := p.constraints[v]; v == "" || done {
			continue
		}
		if c, err := ParseConstraint(v); err == nil { // Validate reports an invalid one
			if p.constraints == nil {
				p.constraints = make(map[string]Constraint)
			}
			p.constraints[v] = c
		}
	}
	for i := range p.Egress.Rules {
		if len(p.Egress.Rules[i].Ports) == 0 {
			p.Egress.Rules[i].Ports = nil
		}
	}
	p.Vulnerable.normalize()
	if len(p.Private) == 0 {
		p.Private = nil
	}
	if len(p.Rules) == 0 {
		p.Rules = nil
	}
	if len(p.Egress.Rules) == 0 {
		p.Egress.Rules = nil
	}
}

// ParseDuration parses a cooldown: a Go duration ("72h", "90m") or a
// whole number of days ("3d"). "0" means none.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("%q: want a duration such as 72h or 3d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 72h or 3d", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", s)
	}
	return d, nil
}

// FormatDuration formats d as ParseDuration reads it, without zero units:
// "72h", "1h30m", "0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
