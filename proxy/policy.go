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
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/policy"
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
	if e.Decision.Rule == policy.RuleVulnerable {
		return fmt.Sprintf("%s denied: %s", e.Target, e.Decision.Reason)
	}
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
// facts it needed. A fact the gate cannot establish stays unknown: it
// never fails the request (see policy.Decide for what an unknown fact
// decides).
func (g *Gate) allow(ctx context.Context, mod, vers string) (outcome, error) {
	p := g.policy()
	if p == nil {
		return outcome{}, nil
	}
	facts, o, err := g.facts(ctx, p, mod, vers)
	if err != nil {
		g.log.Debug("policy facts unknown", zap.String("target", mod+"@"+vers), zap.Error(err))
	}
	d := g.record(ctx, p.Decide(policy.Input{Module: mod, Version: vers, Facts: facts}), mod+"@"+vers)
	o = o.with(decided(d))
	if !d.Allowed {
		return o, &DeniedError{Target: mod + "@" + vers, Decision: d}
	}
	return o, nil
}

// record counts a decision of a request (not each version a list
// filters) and, for report mode, audits a would-be denial (aggregated per
// rule and interval) and logs it (once in wouldDenyEvery).
func (g *Gate) record(ctx context.Context, d policy.Decision, target string) policy.Decision {
	g.cfg.Metrics.decided(string(d.Action), d.Rule, !d.WouldDeny)
	if d.WouldDeny && g.cfg.Audit != nil {
		if err := g.cfg.Audit.WouldDeny(context.WithoutCancel(ctx), d.Rule, d.Reason, target); err != nil {
			g.log.Error("cannot audit a would-be denial", zap.Error(err))
		}
	}
	if d.WouldDeny && g.firstWouldDeny(target, d.Rule) {
		g.log.Warn("policy would deny (report mode)",
			zap.String("target", target), zap.String("rule", d.Rule), zap.String("reason", d.Reason))
	}
	return d
}

// wouldDenyEvery is how often one would-be denial of a target by a rule is
// logged (the audit log aggregates them per rule): one go command asks for .info, .mod, .zip and the
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
		body, o := g.filterList(ctx, p, req.Module, body)
		return body, o, nil
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

// filterList leaves denied versions out of a version list. Versions are
// dated newest first, each by its own .info and checksum-database record
// (fetched if need be), until one is past the cooldown: that one and the
// newer ones are decided on their dates. The older ones are dated by what
// the cache already holds, and one it holds nothing of is decided with
// its time unknown: no version is presumed old because a neighbour is, and
// its own .info, .mod, .zip and lookup are decided on its dates. What
// dating learns stays cached: the .info in the cache, the record by the
// witness. Its decisions are neither counted nor logged: the list's line
// shows no one rule, and the metrics count a request's decisions, not each
// version a list filters. The outcome carries the upstream time of the
// dating.
func (g *Gate) filterList(ctx context.Context, p *policy.Policy, mod string, body []byte) ([]byte, outcome) {
	versions := strings.Fields(string(body))
	sort.Slice(versions, func(i, j int) bool { return semver.Compare(versions[i], versions[j]) > 0 })
	retractions, published := p.Needs(mod)
	dating := published // fetching what it takes, until a version is past the cooldown
	var o outcome
	var kept []string
	for _, v := range versions {
		facts := policy.Facts{Now: g.cfg.Now()}
		var errs []error
		if retractions {
			ro, err := g.retraction(ctx, mod, v, &facts)
			o, errs = o.with(ro), append(errs, err)
		}
		if dating {
			do, err := g.date(ctx, mod, v, &facts)
			o, errs = o.with(do), append(errs, err)
			dating = facts.Published.IsZero() || facts.Now.Sub(facts.Published) < p.Cooldown
		} else if published {
			errs = append(errs, g.dateCached(ctx, mod, v, &facts))
		}
		co, err := g.commitFact(ctx, p, mod, v, &facts)
		o, errs = o.with(co), append(errs, err)
		g.vulnFacts(p, mod, v, &facts)
		if err := errors.Join(errs...); err != nil {
			g.log.Debug("policy facts unknown", zap.String("target", mod+"@"+v), zap.Error(err))
		}
		if p.Decide(policy.Input{Module: mod, Version: v, Facts: facts}).Allowed {
			kept = append(kept, v)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return semver.Compare(kept[i], kept[j]) < 0 })
	if len(kept) == 0 {
		return nil, o
	}
	return []byte(strings.Join(kept, "\n") + "\n"), o
}

// facts gathers what a decision on mod@vers needs under p. A fact it
// cannot establish stays unknown; the error says why. The outcome carries
// the upstream time of the reads.
func (g *Gate) facts(ctx context.Context, p *policy.Policy, mod, vers string) (policy.Facts, outcome, error) {
	facts := policy.Facts{Now: g.cfg.Now()}
	retractions, published := p.Needs(mod)
	var o outcome
	var errs []error
	if retractions {
		ro, err := g.retraction(ctx, mod, vers, &facts)
		o, errs = o.with(ro), append(errs, err)
	}
	if published {
		do, err := g.date(ctx, mod, vers, &facts)
		o, errs = o.with(do), append(errs, err)
	}
	co, err := g.commitFact(ctx, p, mod, vers, &facts)
	g.vulnFacts(p, mod, vers, &facts)
	return facts, o.with(co), errors.Join(append(errs, err)...)
}

// Facts returns every fact a decision on mod@vers can use, for the admin
// API's policy test; the error says which facts are unknown and why.
func (g *Gate) Facts(ctx context.Context, mod, vers string) (policy.Facts, error) {
	facts := policy.Facts{Now: g.cfg.Now()}
	commit, _, cerr := g.commit(ctx, mod, vers)
	facts.Commit = commit
	_, rerr := g.retraction(ctx, mod, vers, &facts)
	_, derr := g.date(ctx, mod, vers, &facts)
	g.vulnFacts(nil, mod, vers, &facts)
	return facts, errors.Join(rerr, derr, cerr)
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

// date fills the publication facts of mod@vers: its .info Time, and when
// the witness first saw its checksum-database record (the record's index
// comes from the lookup that verification makes anyway). Published is the
// later of the two. A part that cannot be established stays unknown. The
// outcome carries the upstream time of the reads.
func (g *Gate) date(ctx context.Context, mod, vers string, f *policy.Facts) (outcome, error) {
	return g.dateBy(ctx, mod, vers, f, g.infoTime, g.recordIndex)
}

// dateCached is date from what the cache already holds, without the
// upstream.
func (g *Gate) dateCached(ctx context.Context, mod, vers string, f *policy.Facts) error {
	_, err := g.dateBy(ctx, mod, vers, f, noOutcome(g.cachedInfoTime), noOutcome(g.storedRecordIndex))
	return err
}

// noOutcome adapts a reader that makes no upstream request to dateBy.
func noOutcome[T any](read func(ctx context.Context, mod, vers string) (T, error)) func(
	ctx context.Context, mod, vers string) (T, outcome, error) {
	return func(ctx context.Context, mod, vers string) (T, outcome, error) {
		v, err := read(ctx, mod, vers)
		return v, outcome{}, err
	}
}

// dateBy is date with the given readers of the .info Time and the index
// of the record.
func (g *Gate) dateBy(ctx context.Context, mod, vers string, f *policy.Facts,
	infoTime func(ctx context.Context, mod, vers string) (time.Time, outcome, error),
	recordIndex func(ctx context.Context, mod, vers string) (int64, outcome, error)) (outcome, error) {
	var errs []error
	t, o, err := infoTime(ctx, mod, vers)
	if err != nil {
		errs = append(errs, err)
	} else {
		f.InfoTime = t
	}
	if !g.private(mod) {
		id, ro, err := recordIndex(ctx, mod, vers)
		if o = o.with(ro); err != nil {
			errs = append(errs, err)
		} else if at, _, ok := g.cfg.Witness.FirstSeen(id); ok {
			f.Record, f.RecordKnown, f.FirstSeen = id, true, at
		} else {
			f.Record, f.RecordKnown, f.BeforeWitness = id, true, true
		}
	}
	f.Published = f.InfoTime
	if f.FirstSeen.After(f.Published) {
		f.Published = f.FirstSeen
	}
	return o, errors.Join(errs...)
}

// infoTime reads the Time of the verified .info of mod@vers.
func (g *Gate) infoTime(ctx context.Context, mod, vers string) (time.Time, outcome, error) {
	req, err := internalRequest(KindInfo, mod, vers)
	if err != nil {
		return time.Time{}, outcome{}, err
	}
	body, o, err := g.load(ctx, req)
	if err != nil {
		return time.Time{}, o, fmt.Errorf("reading the .info time of %s@%s: %w", mod, vers, err)
	}
	t, err := parseInfoTime(mod, vers, body)
	return t, o, err
}

// cachedInfoTime reads the Time of the .info of mod@vers if the cache
// holds it (where load stores it), without the upstream.
func (g *Gate) cachedInfoTime(ctx context.Context, mod, vers string) (time.Time, error) {
	req, err := internalRequest(KindInfo, mod, vers)
	if err != nil {
		return time.Time{}, err
	}
	e, err := g.cfg.Cache.Get(ctx, string(req.Kind)+"/"+req.escaped)
	if err != nil {
		return time.Time{}, fmt.Errorf("the .info of %s@%s is not cached: %w", mod, vers, err)
	}
	return parseInfoTime(mod, vers, e.Value)
}

// parseInfoTime reads the Time of an .info.
func parseInfoTime(mod, vers string, body []byte) (time.Time, error) {
	var info struct{ Time time.Time }
	if err := json.Unmarshal(body, &info); err != nil {
		return time.Time{}, fmt.Errorf("%w: .info of %s@%s: %v", ErrMismatch, mod, vers, err)
	}
	return info.Time, nil
}

// storedRecordIndex is the index of the verified checksum-database
// record of mod@vers if the witness has stored it, without the upstream.
func (g *Gate) storedRecordIndex(ctx context.Context, mod, vers string) (int64, error) {
	if module.CanonicalVersion(vers) != vers {
		return 0, fmt.Errorf("%s@%s: not a canonical version, so not in the checksum database", mod, vers)
	}
	id, ok, err := g.cfg.Witness.StoredRecord(ctx, module.Version{Path: mod, Version: vers})
	switch {
	case err != nil:
		return 0, fmt.Errorf("reading the stored checksum-database record of %s@%s: %w", mod, vers, err)
	case !ok:
		return 0, fmt.Errorf("no checksum-database record of %s@%s is stored", mod, vers)
	}
	return id, nil
}

// recordIndex is the index of the verified checksum-database record of
// mod@vers. The outcome carries the upstream time of the witness's reads.
func (g *Gate) recordIndex(ctx context.Context, mod, vers string) (int64, outcome, error) {
	if module.CanonicalVersion(vers) != vers {
		return 0, outcome{}, fmt.Errorf("%s@%s: not a canonical version, so not in the checksum database", mod, vers)
	}
	clock := &remoteClock{}
	body, err := g.cfg.Witness.Lookup(withRemoteClock(ctx, clock), module.Version{Path: mod, Version: vers})
	o := outcome{upstream: clock.total()}
	if err != nil {
		return 0, o, fmt.Errorf("reading the checksum-database record of %s@%s: %w", mod, vers, err)
	}
	id, _, _, err := tlog.ParseRecord(body)
	if err != nil {
		return 0, o, fmt.Errorf("%w: checksum-database record of %s@%s: %v", ErrMismatch, mod, vers, err)
	}
	return id, o, nil
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
