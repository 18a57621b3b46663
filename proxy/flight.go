package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// flights runs one call per key for all the callers that want it at the
// same time (as singleflight does), with two differences that matter for
// a gate anyone can send requests to: the call's context ends when the
// last caller waiting for it has gone, and after a deadline; and a panic
// in the call is an error for its callers, not the end of the process.
// T is what the call returns to every caller. The zero value is ready to use.
type flights[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
}

// flight is one call in progress.
type flight[T any] struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int
	val     T
	err     error
}

// do calls fn once for all concurrent callers with key, in a context that
// carries ctx's values, ends after timeout, and ends when no caller waits
// any more. A caller whose ctx ends stops waiting with ctx's error.
// started reports whether this caller started the call (false: it joined
// a call another caller started).
func (fs *flights[T]) do(ctx context.Context, key string, timeout time.Duration,
	fn func(context.Context) (T, error)) (val T, started bool, err error) {
	fs.mu.Lock()
	f := fs.m[key]
	if f == nil {
		started = true
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		f = &flight[T]{done: make(chan struct{}), cancel: cancel}
		if fs.m == nil {
			fs.m = make(map[string]*flight[T])
		}
		fs.m[key] = f
		go fs.run(fctx, key, f, fn)
	}
	f.waiters++
	fs.mu.Unlock()
	select {
	case <-f.done:
		return f.val, started, f.err
	case <-ctx.Done():
		fs.mu.Lock()
		if f.waiters--; f.waiters == 0 {
			f.cancel() // nobody waits: stop the work
			fs.forget(key, f)
		}
		fs.mu.Unlock()
		var zero T
		return zero, started, ctx.Err()
	}
}

func (fs *flights[T]) run(ctx context.Context, key string, f *flight[T], fn func(context.Context) (T, error)) {
	defer func() {
		if p := recover(); p != nil {
			var zero T
			f.val, f.err = zero, fmt.Errorf("internal error: %v", p)
		}
		f.cancel()
		fs.mu.Lock()
		fs.forget(key, f)
		fs.mu.Unlock()
		close(f.done)
	}()
	f.val, f.err = fn(ctx)
}

// forget removes f, if it is still key's flight, so that the next caller
// starts afresh. fs.mu is held.
func (fs *flights[T]) forget(key string, f *flight[T]) {
	if fs.m[key] == f {
		delete(fs.m, key)
	}
}
