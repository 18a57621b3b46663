package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/audit"
)

// maxAPIBody bounds the body of an admin API request.
const maxAPIBody = policy.MaxFileSize

// PolicyAPIConfig configures a PolicyAPI. File is required.
type PolicyAPIConfig struct {
	// File holds the policy in force.
	File *policy.File
	// Audit records every change; nil means changes are not recorded
	// (tests only) and the audit endpoint lists nothing.
	Audit *audit.Log
	// Facts gathers what the gate knows of a module version, for the test
	// endpoint. Nil means none are known.
	Facts func(ctx context.Context, module, version string) (policy.Facts, error)
	// Logger is nil for zap.NewNop().
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// PolicyAPI is the JSON admin API of the policy, under /api/v1/. Errors
// are JSON objects {"error": "...", "field": "..."}: 400 for invalid input
// (field names what, such as "rule.versions"), 404 for an unknown rule
// id, 409 for a duplicate id or a policy file whose hand edit was refused.
// Every change is validated, written atomically to the policy file, in
// force at once and appended to the audit log. Authentication is
// RequireAuth's job.
type PolicyAPI struct {
	cfg PolicyAPIConfig
	log *zap.Logger
}

// NewPolicyAPI returns the API for cfg. It also audits the hand edits
// that cfg.File takes into effect or refuses, so make one per File.
func NewPolicyAPI(cfg PolicyAPIConfig) *PolicyAPI {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &PolicyAPI{cfg: cfg, log: cfg.Logger}
	cfg.File.OnChange(a.auditFileEvent)
	return a
}

// Register adds the API's routes to mux.
func (a *PolicyAPI) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/policy", a.getPolicy)
	mux.HandleFunc("GET /api/v1/policy/export", a.export)
	mux.HandleFunc("PUT /api/v1/policy", a.replace)
	mux.HandleFunc("POST /api/v1/policy/rules", a.addRule)
	mux.HandleFunc("DELETE /api/v1/policy/rules/{id}", a.removeRule)
	mux.HandleFunc("POST /api/v1/policy/test", a.test)
	mux.HandleFunc("GET /api/v1/audit", a.listAudit)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusNotFound, fmt.Errorf("no such admin API endpoint: %s %s", r.Method, r.URL.Path), "")
	})
}

// apiError is an error with its HTTP status and the field it is about.
type apiError struct {
	status int
	field  string
	err    error
}

func (e *apiError) Error() string { return e.err.Error() }
func (e *apiError) Unwrap() error { return e.err }

func badField(field string, err error) error {
	return &apiError{status: http.StatusBadRequest, field: field, err: err}
}

// AddRuleRequest is the body of POST /api/v1/policy/rules.
type AddRuleRequest struct {
	Rule policy.Rule `json:"rule"`
	// Position is where the rule goes: 0 is first, -1 (PositionLast) last.
	// Nil means DefaultPosition.
	Position *int `json:"position,omitempty"`
}

// PositionLast, as AddRuleRequest.Position, appends the rule.
const PositionLast = -1

// DefaultPosition is where a rule goes when no position is given: a deny
// rule first, so that it takes effect whatever allow rules exist (as a
// security team adding a deny expects); an allow rule last, so that it
// never overrides an existing deny unless a position says so.
func DefaultPosition(a policy.Action) int {
	if a == policy.Deny {
		return 0
	}
	return PositionLast
}

// AddRuleResponse is the answer to POST /api/v1/policy/rules.
type AddRuleResponse struct {
	Rule     policy.Rule `json:"rule"`
	Position int         `json:"position"`
	// Shadows lists the earlier rules that decide what the new rule
	// matches (see policy.Policy.Shadows); the rule is added all the same.
	Shadows []policy.Shadow `json:"shadows,omitempty"`
}

// ReplaceResponse is the answer to PUT /api/v1/policy.
type ReplaceResponse struct {
	Policy *policy.Policy `json:"policy"`
	// Shadows lists the rules that earlier rules shadow.
	Shadows []policy.Shadow `json:"shadows,omitempty"`
}

// TestRequest is the body of POST /api/v1/policy/test.
type TestRequest struct {
	Module  string `json:"module"`
	Version string `json:"version"`
}

// TestResponse is the answer to POST /api/v1/policy/test.
type TestResponse struct {
	Module     string          `json:"module"`
	Version    string          `json:"version"`
	Decision   policy.Decision `json:"decision"`
	Facts      policy.Facts    `json:"facts"`
	FactsError string          `json:"facts_error,omitempty"`
	// Commit is the version's commit as far as it is known (see
	// policy.CommitOf), and CommitSource where it comes from.
	Commit       string `json:"commit,omitempty"`
	CommitSource string `json:"commit_source,omitempty"`
	// Note says how versions rules and commit rules match this version.
	Note string `json:"note"`
}

// matchingNote explains, for the policy test, that versions rules match
// version strings and what commit rules can see of this version.
func matchingNote(version, commit string) string {
	note := "versions rules match version strings, not commits: " + version +
		" and another version of the same commit (a tag, a pseudo-version) are different versions to them"
	if commit == "" {
		return note + "; commit rules cannot match it (its commit is not known: not a pseudo-version, " +
			"and the upstream's .info names no Origin.Hash)"
	}
	return note + "; commit rules match it by its commit"
}

func (a *PolicyAPI) getPolicy(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.cfg.File.Current())
}

func (a *PolicyAPI) export(w http.ResponseWriter, r *http.Request) {
	b, err := a.cfg.File.Current().Marshal()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func (a *PolicyAPI) addRule(w http.ResponseWriter, r *http.Request) {
	var req AddRuleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	rule, pos := req.Rule, 0
	before, after, err := a.cfg.File.Update(r.Context(), func(p *policy.Policy) error {
		var err error
		rule, pos, err = insertRule(p, req.Rule, req.Position)
		return err
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	a.audit(r.Context(), audit.Entry{Action: audit.PolicyAdd, Subject: rule.ID, Rule: rule.ID, Reason: rule.Reason},
		before, after)
	writeJSON(w, http.StatusCreated, AddRuleResponse{Rule: rule, Position: pos, Shadows: after.Shadows(pos)})
}

// insertRule validates rule (giving it an id if it has none) and puts it
// in p at pos (nil: DefaultPosition; PositionLast: last).
func insertRule(p *policy.Policy, rule policy.Rule, pos *int) (policy.Rule, int, error) {
	if rule.ID == "" {
		rule.ID = nextID(p, string(rule.Action))
	}
	if err := rule.Validate(); err != nil {
		return rule, 0, ruleError(err)
	}
	if p.Rule(rule.ID) >= 0 ||
		slices.ContainsFunc(p.Egress.Rules, func(h policy.HostRule) bool { return h.ID == rule.ID }) {
		return rule, 0, &apiError{
			status: http.StatusConflict,
			field:  "rule.id",
			err:    fmt.Errorf("a rule with id %q exists", rule.ID),
		}
	}
	at := DefaultPosition(rule.Action)
	if pos != nil {
		at = *pos
	}
	if at == PositionLast {
		at = len(p.Rules)
	}
	if at < 0 || at > len(p.Rules) {
		return rule, 0, badField("position", fmt.Errorf("position %d is not in 0-%d (or -1 for last)", at, len(p.Rules)))
	}
	p.Rules = slices.Insert(p.Rules, at, rule)
	return rule, at, nil
}

// ruleError makes a rule's *ValidationError a 400 for field "rule.<field>".
func ruleError(err error) error {
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		return badField("rule."+ve.Field, fmt.Errorf("rule.%s: %s", ve.Field, ve.Problem))
	}
	return badField("rule", err)
}

// nextID returns "<prefix>-<n>" with n one more than any such id in p, so
// ids are not reused after a removal.
func nextID(p *policy.Policy, prefix string) string {
	if prefix == "" {
		prefix = "rule"
	}
	n := 0
	for _, r := range p.Rules {
		if rest, ok := strings.CutPrefix(r.ID, prefix+"-"); ok {
			if k, err := strconv.Atoi(rest); err == nil && k > n {
				n = k
			}
		}
	}
	return fmt.Sprintf("%s-%d", prefix, n+1)
}

func (a *PolicyAPI) removeRule(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var removed policy.Rule
	before, after, err := a.cfg.File.Update(r.Context(), func(p *policy.Policy) error {
		i := p.Rule(id)
		if i < 0 {
			return &apiError{status: http.StatusNotFound, field: "id", err: fmt.Errorf("no rule with id %q", id)}
		}
		removed = p.Rules[i]
		p.Rules = slices.Delete(p.Rules, i, i+1)
		return nil
	})
	if err != nil {
		writeAPIError(w, err)
		return
	}
	a.audit(
		r.Context(),
		audit.Entry{Action: audit.PolicyRemove, Subject: id, Rule: id, Reason: removed.Reason},
		before,
		after,
	)
	writeJSON(w, http.StatusOK, map[string]policy.Rule{"removed": removed})
}

func (a *PolicyAPI) replace(w http.ResponseWriter, r *http.Request) {
	p, err := readPolicy(w, r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	before, after, err := a.cfg.File.Replace(r.Context(), p)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	a.audit(r.Context(), audit.Entry{Action: audit.PolicyReplace, Subject: "policy"}, before, after)
	writeJSON(w, http.StatusOK, ReplaceResponse{Policy: after, Shadows: after.AllShadows()})
}

// readPolicy parses a policy body: the policy as a JSON object, or
// {"yaml": "<the policy file's text>"} (parsed as the file is, so that
// problems name its lines).
func readPolicy(w http.ResponseWriter, r *http.Request) (*policy.Policy, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		return nil, badField("", fmt.Errorf("reading the body: %w", err))
	}
	var wrapped map[string]json.RawMessage
	if json.Unmarshal(body, &wrapped) == nil && len(wrapped) == 1 && wrapped["yaml"] != nil {
		var text string
		if err := json.Unmarshal(wrapped["yaml"], &text); err != nil {
			return nil, badField("yaml", fmt.Errorf("want a string: %w", err))
		}
		return policy.Parse([]byte(text))
	}
	var p policy.Policy
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, badField("", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (a *PolicyAPI) test(w http.ResponseWriter, r *http.Request) {
	var req TestRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	if err := module.CheckPath(req.Module); err != nil {
		writeAPIError(w, badField("module", err))
		return
	}
	if !semver.IsValid(req.Version) {
		writeAPIError(w, badField("version", fmt.Errorf("%q is not a semantic version such as v1.2.3", req.Version)))
		return
	}
	p := a.cfg.File.Current()
	resp := TestResponse{Module: req.Module, Version: req.Version}
	needR, needP := p.Needs(req.Module)
	if (needR || needP || p.NeedsCommit(req.Module) || p.NeedsVulns(req.Module)) && a.cfg.Facts != nil {
		facts, err := a.cfg.Facts(r.Context(), req.Module, req.Version)
		if err != nil {
			resp.FactsError = err.Error()
		}
		resp.Facts = facts
	}
	if resp.Facts.Now.IsZero() {
		resp.Facts.Now = a.cfg.Now()
	}
	in := policy.Input{Module: req.Module, Version: req.Version, Facts: resp.Facts}
	resp.Decision = p.Decide(in)
	resp.Commit, resp.CommitSource = policy.CommitOf(in)
	resp.Note = matchingNote(req.Version, resp.Commit)
	writeJSON(w, http.StatusOK, resp)
}

func (a *PolicyAPI) listAudit(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeAPIError(w, badField("limit", fmt.Errorf("limit %q: want a positive number", s)))
			return
		}
		limit = n
	}
	page := AuditPage{Entries: []audit.Entry{}}
	if a.cfg.Audit != nil {
		var err error
		page.Entries, page.Next, err = a.cfg.Audit.ListPage(r.Context(), limit, r.URL.Query().Get("before"))
		if errors.Is(err, audit.ErrBadCursor) {
			err = badField("before", err)
		}
		if err != nil {
			writeAPIError(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, page)
}

// AuditPage is the answer of GET /api/v1/audit?limit=N&before=CURSOR: the
// newest N entries older than CURSOR (all, without it), oldest first, and
// Next, the CURSOR of the page of older entries ("" if none).
type AuditPage struct {
	Entries []audit.Entry `json:"entries"`
	Next    string        `json:"next,omitempty"`
}

// audit records a change made through the API, with its caller and the
// policy before and after as YAML.
func (a *PolicyAPI) audit(ctx context.Context, e audit.Entry, before, after *policy.Policy) {
	e.Who = Who(ctx)
	if e.Who == "" {
		e.Who = "unknown"
	}
	e.Before, e.After = yamlOf(before), yamlOf(after)
	a.log.Info(
		"policy changed",
		zap.String("who", e.Who),
		zap.String("action", e.Action),
		zap.String("subject", e.Subject),
	)
	a.append(ctx, e)
}

// auditFileEvent records hand edits of the policy file.
func (a *PolicyAPI) auditFileEvent(ctx context.Context, ev policy.Event) {
	e := audit.Entry{Who: "file", Subject: ev.Path, Before: yamlOf(ev.Before)}
	switch ev.Kind {
	case policy.Reloaded:
		e.Action, e.After = audit.PolicyReload, yamlOf(ev.After)
	case policy.Refused:
		e.Action, e.After = audit.PolicyInvalid, string(bytes.ToValidUTF8(ev.Content, []byte("?")))
		if ev.Err != nil {
			e.Reason = ev.Err.Error()
		}
	default:
		return // changes through the API are audited with their caller
	}
	a.append(ctx, e)
}

func (a *PolicyAPI) append(ctx context.Context, e audit.Entry) {
	if a.cfg.Audit == nil {
		return
	}
	e.Time = a.cfg.Now()
	if err := a.cfg.Audit.Append(context.WithoutCancel(ctx), e); err != nil {
		a.log.Error(
			"audit log append failed",
			zap.String("action", e.Action),
			zap.String("subject", e.Subject),
			zap.Error(err),
		)
	}
}

func yamlOf(p *policy.Policy) string {
	if p == nil {
		return ""
	}
	b, err := p.Marshal()
	if err != nil {
		return ""
	}
	return string(b)
}

// decodeJSON decodes one JSON object from the body into v, strictly.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ve *policy.ValidationError
		if errors.As(err, &ve) {
			return ruleError(ve)
		}
		return badField("", fmt.Errorf("invalid JSON body: %w", err))
	}
	if dec.More() {
		return badField("", errors.New("invalid JSON body: more than one value"))
	}
	return nil
}

// writeAPIError writes err as a JSON error with its status.
func writeAPIError(w http.ResponseWriter, err error) {
	var ae *apiError
	var ve *policy.ValidationError
	switch {
	case errors.As(err, &ae):
		writeJSONError(w, ae.status, ae.err, ae.field)
	case errors.As(err, &ve):
		writeJSONError(w, http.StatusBadRequest, err, ve.Field)
	case errors.Is(err, policy.ErrFileInvalid):
		writeJSONError(w, http.StatusConflict, fmt.Errorf("%w; fix the file, or import a whole policy", err), "")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeJSONError(w, http.StatusServiceUnavailable, err, "")
	default:
		writeJSONError(w, http.StatusInternalServerError, err, "")
	}
}

// APIError is the JSON body of an admin API error.
type APIError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	// Problems lists every problem of an invalid policy.
	Problems []*policy.ValidationError `json:"problems,omitempty"`
}

func writeJSONError(w http.ResponseWriter, status int, err error, field string) {
	body := APIError{Error: err.Error(), Field: field, Problems: policy.Problems(err)}
	if len(body.Problems) < 2 {
		body.Problems = nil
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
