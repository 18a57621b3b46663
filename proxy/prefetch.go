package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/policy"
)

// Prefetching the go.mod files a go.mod requires, and the .info of its
// version (issue 14, the cold path on the real network).
//
// The go command loads the module graph two go.mod files at a time (one
// per core here), and asks for a module's requirements only once it has
// its go.mod: on a cold cache each of those answers costs the upstream's
// round trips and the checksum-database lookup's, one after the other.
// So when the gate has fetched and verified a go.mod for a client, it
// fetches and verifies the go.mod files that one requires, in the
// background, through the same pipeline (checksum database, cache, shared
// level): the client's requests for them a moment later are cache hits.
// It also fetches the .info of the go.mod's own version: `go mod
// download`, the first step of most CI jobs and Dockerfiles, asks for the
// .info of every module it downloads, one at a time, after the graph.
//
// Decisions:
//   - Only go.mod files and .info files, and only for a go.mod a client
//     asked for (its requirements, its own .info), fetched for it or
//     ahead of it: they are small, and the
//     go command asks for most of them (a build that never asks for the
//     .info costs one small upstream request per module fetched cold)
//     (the files of a version the policy does not allow plainly, denied or
//     denied in report mode, are not fetched, so that prefetching leaves no
//     decision, audit entry or metric a client did not cause).
//   - Bounded: at most prefetchPerFile requirements of one go.mod, each
//     file queued once (the same requirement recurs in many go.mod files),
//     two queues of prefetchQueue (further ones are dropped), and
//     Config.Prefetch workers. Never offline.
//   - The .info files go first (their own queue): the client asks for
//     each one at a time once the graph is loaded, while the requirements
//     it asks for two at a time during it.
//   - A failure is logged at debug level: the client's own request, if it
//     comes, fetches and answers with the reason.

const (
	prefetchQueue   = 4096
	prefetchPerFile = 256
	// prefetchTimeout bounds one prefetch; the fetch it starts is shared
	// with any client that asks meanwhile.
	prefetchTimeout = time.Minute
)

// prefetcher is the queue of files to fetch ahead.
type prefetcher struct {
	running atomic.Bool  // RunPrefetch's workers are reading the queues
	infos   chan Request // .info files, taken first
	mods    chan Request // go.mod files

	mu sync.Mutex
	// queued are the cache keys queued so far (at most prefetchAhead; then
	// it starts again), so that each file is queued once.
	queued map[string]bool
	// ahead are the cache keys of go.mod files fetched ahead that no
	// client has asked for yet (at most prefetchAhead): the first client
	// request for one, a cache hit, is treated as a fetch for a client.
	ahead map[string]bool
}

// prefetchAhead bounds prefetcher.ahead.
const prefetchAhead = 1 << 14

// fetchedAhead notes that the go.mod under key was fetched ahead.
func (p *prefetcher) fetchedAhead(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ahead == nil {
		p.ahead = make(map[string]bool)
	}
	if len(p.ahead) < prefetchAhead {
		p.ahead[key] = true
	}
}

// firstQueue reports whether key was not queued before, and notes it.
func (p *prefetcher) firstQueue(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queued[key] {
		return false
	}
	if p.queued == nil || len(p.queued) >= prefetchAhead {
		p.queued = make(map[string]bool)
	}
	p.queued[key] = true
	return true
}

// takeAhead reports whether the go.mod under key was fetched ahead and not
// asked for since, and forgets it.
func (p *prefetcher) takeAhead(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ahead[key] {
		return false
	}
	delete(p.ahead, key)
	return true
}

// RunPrefetch runs Config.Prefetch workers that fetch the files queued by
// prefetchRequires, until ctx ends. It returns at once when
// Config.Prefetch is 0 or the gate is offline.
func (g *Gate) RunPrefetch(ctx context.Context) {
	if g.cfg.Prefetch <= 0 || g.cfg.Offline {
		return
	}
	g.prefetch.infos = make(chan Request, prefetchQueue)
	g.prefetch.mods = make(chan Request, prefetchQueue)
	g.prefetch.running.Store(true)
	defer g.prefetch.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	for range g.cfg.Prefetch {
		wg.Go(func() {
			for {
				var req Request
				select {
				case req = <-g.prefetch.infos:
				default:
					select {
					case <-ctx.Done():
						return
					case req = <-g.prefetch.infos:
					case req = <-g.prefetch.mods:
					}
				}
				g.prefetchOne(ctx, req)
			}
		})
	}
}

// prefetchRequires queues the .info of req, a go.mod just fetched for a
// client (cache is cacheMiss), or fetched ahead and asked for by a client
// for the first time (a cacheHit), and the go.mod files that body, its
// content, requires. Any other request queues nothing.
func (g *Gate) prefetchRequires(ctx context.Context, req Request, body []byte, cache string) {
	if req.Kind != KindMod || ownRequest(ctx) || !g.prefetch.running.Load() {
		return
	}
	switch cache {
	case cacheMiss:
	case cacheHit:
		if !g.prefetch.takeAhead(req.cacheKey()) {
			return
		}
	default:
		return
	}
	if info, err := internalRequest(KindInfo, req.Module, req.Version); err == nil {
		g.enqueue(info)
	}
	f, err := modfile.ParseLax(req.Target(), body, nil)
	if err != nil {
		return // verified bytes the go command will refuse too
	}
	for i, r := range f.Require {
		if i == prefetchPerFile {
			break
		}
		if dep, err := internalRequest(KindMod, r.Mod.Path, r.Mod.Version); err == nil {
			g.enqueue(dep)
		}
	}
}

// enqueue queues req for a worker if it names a canonical version, was
// not queued before, and its queue has room.
func (g *Gate) enqueue(req Request) {
	if module.CanonicalVersion(req.Version) != req.Version || !g.prefetch.firstQueue(req.cacheKey()) {
		return
	}
	queue := g.prefetch.mods
	if req.Kind == KindInfo {
		queue = g.prefetch.infos
	}
	select {
	case queue <- req:
		g.cfg.Metrics.prefetched("queued")
	default:
		g.cfg.Metrics.prefetched("dropped")
	}
}

// prefetchOne fetches and verifies one queued file, if the cache does not
// hold it and the policy allows it plainly (checked in that order: the
// policy's facts may cost an upstream request).
func (g *Gate) prefetchOne(ctx context.Context, req Request) {
	ctx, cancel := context.WithTimeout(ctx, prefetchTimeout)
	defer cancel()
	if _, err := g.cfg.Cache.Get(ctx, req.cacheKey()); err == nil {
		g.cfg.Metrics.prefetched("cached")
		return
	}
	if !g.plainlyAllowed(ctx, req) {
		g.cfg.Metrics.prefetched("skipped")
		return
	}
	if _, o, err := g.load(ctx, req); err != nil {
		g.cfg.Metrics.prefetched("failed")
		g.log.Debug("prefetch failed", zap.String("target", req.Target()), zap.Error(err))
	} else if o.cache == cacheMiss {
		g.cfg.Metrics.prefetched("fetched")
		if req.Kind == KindMod {
			g.prefetch.fetchedAhead(req.cacheKey())
		}
	} else {
		g.cfg.Metrics.prefetched("cached")
	}
}

// plainlyAllowed decides req as allow does, but records nothing: true
// only for an allow that is not a would-be denial of report mode.
func (g *Gate) plainlyAllowed(ctx context.Context, req Request) bool {
	p := g.policy()
	if p == nil {
		return true
	}
	facts, _, err := g.facts(ctx, p, req.Module, req.Version)
	if err != nil {
		return false
	}
	d := p.Decide(policy.Input{Module: req.Module, Version: req.Version, Facts: facts})
	return d.Allowed && !d.WouldDeny
}
