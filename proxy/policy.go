package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/policy"
	"github.com/modgate/modgate/proxy/audit"
)

// ErrDenied is wrapped by every policy refusal.
var ErrDenied = errors.New("denied by policy")

// DeniedError is a refusal of a module version by the policy. For @latest
// it answers 404 (NotFound), so that the go command reads the filtered
// version list instead.
type DeniedError struct {
	Target   string // module@version
	Decision policy.Decision
	NotFound bool
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("%s denied by policy rule %s: %s", e.Target, e.Decision.Rule, e.Decision.Reason)
}

// Unwrap returns ErrDenied.
func (e *DeniedError) Unwrap() error { return ErrDenied }

// HTTPStatus is 403, or 404 for @latest.
func (e *DeniedError) HTTPStatus() int {
	if e.NotFound {
		return http.StatusNotFound
	}
	return http.StatusForbidden
}

// policy returns the policy in force, or nil.
func (g *Gate) policy() *policy.Policy {
	if g.cfg.Policy == nil {
		return nil
	}
	return g.cfg.Policy()
}

// allow decides mod@vers and returns a *DeniedError for an enforced
// denial. The outcome carries the decision and the upstream time of the
// facts it needed.
func (g *Gate) allow(ctx context.Context, mod, vers string) (outcome, error) {
	p := g.policy()
	if p == nil {
		return outcome{}, nil
	}
	facts, o, err := g.facts(ctx, p, mod, vers)
	if err != nil {
		return o, err
	}
	d := g.record(ctx, p.Decide(policy.Input{Module: mod, Version: vers, Facts: facts}), mod+"@"+vers)
	o = o.with(decided(d))
	if !d.Allowed {
		return o, &DeniedError{Target: mod + "@" + vers, Decision: d}
	}
	return o, nil
}

// record counts a decision on target and, for report mode, logs and
// audits a would-be denial (once in wouldDenyEvery).
func (g *Gate) record(ctx context.Context, d policy.Decision, target string) policy.Decision {
	g.count(d)
	if d.WouldDeny && g.firstWouldDeny(target, d.Rule) {
		g.log.Warn("policy would deny (report mode)",
			zap.String("target", target), zap.String("rule", d.Rule), zap.String("reason", d.Reason))
		if g.cfg.Audit != nil {
			entry := audit.Entry{Time: g.cfg.Now(), Who: "gate", Action: audit.WouldDeny, Subject: target,
				Rule: d.Rule, Reason: d.Reason}
			if err := g.cfg.Audit.Append(context.WithoutCancel(ctx), entry); err != nil {
				g.log.Error("cannot audit a would-be denial", zap.Error(err))
			}
		}
	}
	return d
}

// count counts a decision in the metrics.
func (g *Gate) count(d policy.Decision) policy.Decision {
	g.cfg.Metrics.decided(string(d.Action), d.Rule, !d.WouldDeny)
	return d
}

// wouldDenyEvery is how often one would-be denial of a target by a rule is
// logged and audited: one go command asks for .info, .mod, .zip and the
// lookup of a version, and should leave one entry, not four.
const wouldDenyEvery = time.Minute

// firstWouldDeny reports whether a would-be denial of target by rule is the
// first in wouldDenyEvery.
func (g *Gate) firstWouldDeny(target, rule string) bool {
	now := g.cfg.Now()
	key := target + " " + rule
	g.wouldMu.Lock()
	defer g.wouldMu.Unlock()
	if last, ok := g.wouldDeny[key]; ok && now.Sub(last) < wouldDenyEvery {
		return false
	}
	if g.wouldDeny == nil || len(g.wouldDeny) > 10000 {
		g.wouldDeny = make(map[string]time.Time)
	}
	g.wouldDeny[key] = now
	return true
}

// applyPolicy filters what list, @latest and .info of a query answer.
func (g *Gate) applyPolicy(ctx context.Context, req Request, body []byte) ([]byte, outcome, error) {
	p := g.policy()
	switch {
	case p == nil:
		return body, outcome{}, nil
	case req.Kind == KindList:
		return g.filterList(ctx, p, req.Module, body)
	case req.Kind == KindLatest || (req.Kind == KindInfo && module.CanonicalVersion(req.Version) != req.Version):
		var info struct{ Version string }
		if err := json.Unmarshal(body, &info); err != nil {
			return nil, outcome{}, fmt.Errorf("%w: .info of %s: %v", ErrMismatch, req.Target(), err)
		}
		o, err := g.allow(ctx, req.Module, info.Version)
		if err != nil {
			var de *DeniedError
			if errors.As(err, &de) && req.Kind == KindLatest {
				de.NotFound = true
				de.Target = req.Module + "@latest (" + info.Version + ")"
			}
			return nil, o, err
		}
		return body, o, nil
	}
	return body, outcome{}, nil
}

// filterList leaves denied versions out of a version list. Publication
// times are read newest first: once a version is older than the cooldown,
// the versions below it in semver order are taken to be at least as old
// (the .info, .mod and .zip checks of a version stay exact). Its decisions
// are counted, not logged: the list's line shows no one rule.
func (g *Gate) filterList(ctx context.Context, p *policy.Policy, mod string, body []byte) ([]byte, outcome, error) {
	versions := strings.Fields(string(body))
	sort.Slice(versions, func(i, j int) bool { return semver.Compare(versions[i], versions[j]) > 0 })
	retractions, published := p.Needs(mod)
	var o outcome
	var oldEnough time.Time // publication time of the newest version past the cooldown
	var kept []string
	for _, v := range versions {
		facts := policy.Facts{Now: g.cfg.Now()}
		if retractions {
			ro, err := g.retraction(ctx, mod, v, &facts)
			if o = o.with(ro); err != nil {
				return nil, o, err
			}
		}
		if published && oldEnough.IsZero() {
			t, po, err := g.published(ctx, mod, v)
			if o = o.with(po); err != nil {
				return nil, o, err
			}
			facts.Published = t
			if !t.IsZero() && facts.Now.Sub(t) >= p.Cooldown {
				oldEnough = t
			}
		} else if published {
			facts.Published = oldEnough
		}
		if d := g.count(p.Decide(policy.Input{Module: mod, Version: v, Facts: facts})); d.Allowed {
			kept = append(kept, v)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return semver.Compare(kept[i], kept[j]) < 0 })
	if len(kept) == 0 {
		return nil, o, nil
	}
	return []byte(strings.Join(kept, "\n") + "\n"), o, nil
}

// facts gathers what a decision on mod@vers needs under p.
func (g *Gate) facts(ctx context.Context, p *policy.Policy, mod, vers string) (policy.Facts, outcome, error) {
	facts := policy.Facts{Now: g.cfg.Now()}
	retractions, published := p.Needs(mod)
	var o outcome
	if retractions {
		ro, err := g.retraction(ctx, mod, vers, &facts)
		if o = o.with(ro); err != nil {
			return facts, o, err
		}
	}
	if published {
		t, po, err := g.published(ctx, mod, vers)
		if o = o.with(po); err != nil {
			return facts, o, err
		}
		facts.Published = t
	}
	return facts, o, nil
}

// Facts returns every fact a decision on mod@vers can use, for the admin
// API's policy test.
func (g *Gate) Facts(ctx context.Context, mod, vers string) (policy.Facts, error) {
	facts := policy.Facts{Now: g.cfg.Now()}
	if _, err := g.retraction(ctx, mod, vers, &facts); err != nil {
		return facts, err
	}
	t, _, err := g.published(ctx, mod, vers)
	facts.Published = t
	return facts, err
}

// internalRequest builds a Request for the gate's own reads.
func internalRequest(kind Kind, mod, vers string) (Request, error) {
	esc, err := module.EscapePath(mod)
	if err != nil {
		return Request{}, badRequest("invalid module path %q: %v", mod, err)
	}
	escVers := ""
	if vers != "" {
		if escVers, err = module.EscapeVersion(vers); err != nil {
			return Request{}, badRequest("invalid version %q: %v", vers, err)
		}
	}
	return moduleRequest(kind, esc, escVers)
}

// published reads the publication time of mod@vers from its verified .info.
func (g *Gate) published(ctx context.Context, mod, vers string) (time.Time, outcome, error) {
	req, err := internalRequest(KindInfo, mod, vers)
	if err != nil {
		return time.Time{}, outcome{}, err
	}
	body, o, err := g.load(ctx, req)
	if err != nil {
		return time.Time{}, o, fmt.Errorf("reading the publication time of %s@%s: %w", mod, vers, err)
	}
	var info struct{ Time time.Time }
	if err := json.Unmarshal(body, &info); err != nil {
		return time.Time{}, o, fmt.Errorf("%w: .info of %s@%s: %v", ErrMismatch, mod, vers, err)
	}
	return info.Time, o, nil
}

// retraction reads the retract directives of the module's latest go.mod
// (as the go command does) and fills the retraction facts for vers.
func (g *Gate) retraction(ctx context.Context, mod, vers string, facts *policy.Facts) (outcome, error) {
	latest, o, err := g.latestVersion(ctx, mod)
	if err != nil || latest == "" {
		return o, err
	}
	req, err := internalRequest(KindMod, mod, latest)
	if err != nil {
		return o, err
	}
	body, lo, err := g.load(ctx, req)
	if o = o.with(lo); err != nil {
		return o, fmt.Errorf("reading the retractions of %s (go.mod of %s): %w", mod, latest, err)
	}
	f, err := modfile.ParseLax("go.mod", body, nil)
	if err != nil {
		return o, fmt.Errorf("%w: go.mod of %s@%s: %v", ErrMismatch, mod, latest, err)
	}
	facts.RetractedKnown = true
	for _, r := range f.Retract {
		if semver.Compare(vers, r.Low) >= 0 && semver.Compare(vers, r.High) <= 0 {
			facts.Retracted, facts.Rationale = true, r.Rationale
		}
	}
	return o, nil
}

// latestVersion is the version whose go.mod holds the module's
// retractions: the newest release in the list, else the newest
// pre-release, else @latest. "" if the module has none.
func (g *Gate) latestVersion(ctx context.Context, mod string) (string, outcome, error) {
	req, err := internalRequest(KindList, mod, "")
	if err != nil {
		return "", outcome{}, err
	}
	body, o, err := g.load(ctx, req)
	if err != nil && statusOf(err) != http.StatusNotFound && statusOf(err) != http.StatusGone {
		return "", o, fmt.Errorf("reading the versions of %s: %w", mod, err)
	}
	release, pre := "", ""
	for _, v := range strings.Fields(string(body)) {
		if semver.Prerelease(v) == "" && semver.Compare(v, release) > 0 {
			release = v
		} else if semver.Compare(v, pre) > 0 {
			pre = v
		}
	}
	if release != "" {
		return release, o, nil
	}
	return pre, o, nil
}
