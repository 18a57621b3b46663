package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/modgate/modgate/cache"
)

// shutdownClock bounds the end of serve. From the moment its context ends
// (SIGTERM, Ctrl-C), the process has --shutdown-timeout to stop: the
// steps that can say what they abandon (closing the cache) get a soft
// deadline a little before it, and at the deadline itself the process
// exits whatever it is doing, logging the step it abandoned.
type shutdownClock struct {
	log     *zap.Logger
	timeout time.Duration
	exit    func(code int)
	step    atomic.Pointer[string]

	mu       sync.Mutex
	deadline time.Time   // zero until ctx ends
	timer    *time.Timer // the hard deadline
	stopCtx  func() bool
}

// startShutdownClock starts the clock when ctx ends.
func startShutdownClock(ctx context.Context, timeout time.Duration, log *zap.Logger, exit func(int)) *shutdownClock {
	c := &shutdownClock{log: log, timeout: timeout, exit: exit}
	c.setStep("closing the listeners") // the first step once ctx ends
	c.stopCtx = context.AfterFunc(ctx, c.start)
	return c
}

// start begins the countdown (once).
func (c *shutdownClock) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.deadline.IsZero() {
		return
	}
	c.deadline = time.Now().Add(c.timeout)
	c.timer = time.AfterFunc(c.timeout, c.expire)
}

// setStep names what the shutdown does now, for the log if it is abandoned.
func (c *shutdownClock) setStep(s string) { c.step.Store(&s) }

// expire ends the process at the hard deadline.
func (c *shutdownClock) expire() {
	c.log.Error("shutdown took longer than --shutdown-timeout: exiting, abandoning what it was doing",
		zap.Duration("shutdown_timeout", c.timeout), zap.String("abandoned", *c.step.Load()))
	_ = c.log.Sync()
	c.exit(1)
}

// soft returns a context that ends a little before the hard deadline
// (starting the countdown now if ctx has not ended yet).
func (c *shutdownClock) soft() (context.Context, context.CancelFunc) {
	c.start()
	c.mu.Lock()
	defer c.mu.Unlock()
	margin := min(c.timeout/10, time.Second)
	return context.WithDeadline(context.Background(), c.deadline.Add(-margin))
}

// stop ends the clock once the shutdown is done.
func (c *shutdownClock) stop() {
	c.stopCtx()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}

// closeCache closes the cache within the shutdown's soft deadline. A cache
// that cannot flush (a failing or removed disk keeps Badger retrying) is
// abandoned: the error says what was left, and the next start recovers
// from the cache's write-ahead log and value log.
func (g *gateParts) closeCache(clock *shutdownClock, log *zap.Logger) error {
	if g.leaves != nil {
		g.leaves.Stop()
		g.leaves = nil
	}
	if g.cache == nil {
		return nil
	}
	clock.setStep("closing the cache (flushing its memtable)")
	ctx, cancel := clock.soft()
	defer cancel()
	err := g.cache.CloseContext(ctx)
	g.cache = nil // abandoned or closed: g.close must not wait for it
	if errors.Is(err, cache.ErrCloseAbandoned) {
		log.Error("the cache did not close within --shutdown-timeout: abandoned", zap.Error(err))
	}
	return err
}
