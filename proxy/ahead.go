package proxy

import (
	"context"
	"fmt"

	"golang.org/x/mod/module"
)

// sumAhead is a checksum-database lookup started when a fetch starts, so
// that its round trips overlap the download instead of following it. The
// lookup is the same proof checkSum waits for (the witness's Lines); only
// its start moves. It runs in the fetch's context, so it ends with the
// fetch.
type sumAhead struct {
	done  chan struct{} // closed when lines and err are set
	lines []string
	err   error
}

// lookAhead starts the lookup of req's go.sum lines (suffix "" for the
// zip, "/go.mod" for the go.mod). It returns nil for a private module,
// which is not looked up.
func (g *Gate) lookAhead(ctx context.Context, req Request, suffix string) *sumAhead {
	if g.private(req.Module) {
		return nil
	}
	a := &sumAhead{done: make(chan struct{})}
	go func() {
		defer close(a.done)
		defer func() {
			if p := recover(); p != nil {
				a.lines, a.err = nil, fmt.Errorf("internal error: %v", p)
			}
		}()
		a.lines, a.err = g.cfg.Witness.Lines(ctx, module.Version{Path: req.Module, Version: req.Version + suffix})
	}()
	return a
}

// ready reports whether the lookup has ended (a nil lookup, of a private
// module, is ready), and failed whether it ended in an error.
func (a *sumAhead) ready() (ready, failed bool) {
	if a == nil {
		return true, false
	}
	select {
	case <-a.done:
		return true, a.err != nil
	default:
		return false, false
	}
}

// check compares hash with the looked-up line as checkSum does, waiting
// for the lookup, and returns the trust mark to store.
func (g *Gate) checkAhead(ctx context.Context, a *sumAhead, req Request, suffix, hash string) (byte, error) {
	if a == nil {
		return trustPrivate, nil
	}
	wait := func(ctx context.Context, _ module.Version) ([]string, error) {
		select {
		case <-a.done:
			return a.lines, a.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return trustSumDB, matchSum(ctx, wait, g.cfg.Witness.Name(), req, suffix, hash)
}
