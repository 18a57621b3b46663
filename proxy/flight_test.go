package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFlights checks the shared call: one call for concurrent callers;
// its work stops once no caller waits, but not while one still does; a
// panic is an error.
func TestFlights(t *testing.T) {
	t.Run("one call for concurrent callers", func(t *testing.T) {
		var fs flights[[]byte]
		var calls, starters atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				b, started, err := fs.do(context.Background(), "k", time.Minute, func(context.Context) ([]byte, error) {
					calls.Add(1)
					<-release
					return []byte("v"), nil
				})
				if started {
					starters.Add(1)
				}
				if err != nil || string(b) != "v" {
					t.Errorf("got %q, %v", b, err)
				}
			})
		}
		time.Sleep(50 * time.Millisecond)
		close(release)
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
		if n := starters.Load(); n != 1 {
			t.Errorf("%d callers started the call, want 1", n)
		}
	})
	t.Run("work stops when no caller waits", func(t *testing.T) {
		var fs flights[[]byte]
		stopped := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		ctx2, cancel2 := context.WithCancel(context.Background())
		work := func(ctx context.Context) ([]byte, error) {
			<-ctx.Done() // a call that would run for ever
			close(stopped)
			return nil, ctx.Err()
		}
		errs := make(chan error, 2)
		go func() { _, _, err := fs.do(ctx, "k", time.Hour, work); errs <- err }()
		time.Sleep(20 * time.Millisecond)
		go func() { _, _, err := fs.do(ctx2, "k", time.Hour, work); errs <- err }()
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Fatalf("first caller: %v", err)
		}
		select {
		case <-stopped:
			t.Fatal("work stopped while a caller still waits")
		case <-time.After(50 * time.Millisecond):
		}
		cancel2()
		<-errs
		select {
		case <-stopped:
		case <-time.After(time.Second):
			t.Fatal("work runs on with no caller waiting")
		}
	})
	t.Run("deadline", func(t *testing.T) {
		var fs flights[[]byte]
		_, _, err := fs.do(context.Background(), "k", 10*time.Millisecond, func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("panic", func(t *testing.T) {
		var fs flights[[]byte]
		_, _, err := fs.do(context.Background(), "k", time.Minute, func(context.Context) ([]byte, error) { panic("boom") })
		if err == nil {
			t.Error("a panic is no error")
		}
		b, _, err := fs.do(context.Background(), "k", time.Minute, func(context.Context) ([]byte, error) {
			return []byte("ok"), nil
		})
		if err != nil || string(b) != "ok" {
			t.Errorf("after a panic: %q, %v", b, err)
		}
	})
}
