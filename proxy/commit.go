package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/policy"
)

// commit returns the commit hash of mod@vers as the upstream's verified
// .info names it (Origin.Hash), lower-case, or "" if it names none (or
// something that is not a hex hash of at least policy.MinCommitLen
// digits). A pseudo-version names its own commit (policy.CommitOf), so
// its .info is not read. The outcome carries the upstream time of the read.
func (g *Gate) commit(ctx context.Context, mod, vers string) (string, outcome, error) {
	if module.IsPseudoVersion(vers) {
		return "", outcome{}, nil
	}
	req, err := internalRequest(KindInfo, mod, vers)
	if err != nil {
		return "", outcome{}, err
	}
	body, o, err := g.load(ctx, req)
	if err != nil {
		return "", o, fmt.Errorf("reading the commit of %s@%s: %w", mod, vers, err)
	}
	var info struct{ Origin struct{ Hash string } }
	if err := json.Unmarshal(body, &info); err != nil {
		return "", o, fmt.Errorf("%w: .info of %s@%s: %v", ErrMismatch, mod, vers, err)
	}
	hash := strings.ToLower(info.Origin.Hash)
	n := len(hash)
	if n < policy.MinCommitLen || n > policy.MaxCommitLen || strings.Trim(hash, "0123456789abcdef") != "" {
		return "", o, nil
	}
	return hash, o, nil
}

// commitFact fills facts.Commit when a commit rule of p could decide a
// version of mod. A commit it cannot read stays unknown, as other facts
// do (a commit rule then does not match); the error says why.
func (g *Gate) commitFact(ctx context.Context, p *policy.Policy, mod, vers string,
	facts *policy.Facts) (outcome, error) {
	if !p.NeedsCommit(mod) {
		return outcome{}, nil
	}
	c, o, err := g.commit(ctx, mod, vers)
	facts.Commit = c
	return o, err
}
