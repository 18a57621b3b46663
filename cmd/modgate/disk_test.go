package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/modgate/modgate/cache"
)

func TestMinFreeFlag(t *testing.T) {
	tests := []struct {
		in      string
		want    cache.FreeSpace
		wantErr bool
	}{
		{"", cache.FreeSpace{}, false},
		{"2GiB", cache.FreeSpace{Bytes: 2 << 30}, false},
		{"10%", cache.FreeSpace{Percent: 10}, false},
		{"2GiB,10%", cache.FreeSpace{Bytes: 2 << 30, Percent: 10}, false},
		{"0", cache.FreeSpace{Bytes: 1}, false},
		{"100%", cache.FreeSpace{}, true},
		{"-1%", cache.FreeSpace{}, true},
		{"lots", cache.FreeSpace{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var m minFree
			err := m.Set(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Set(%q): %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && cache.FreeSpace(m) != tt.want {
				t.Errorf("Set(%q) = %+v, want %+v", tt.in, m, tt.want)
			}
		})
	}
}

// TestShutdownClock checks that the clock starts when the context ends,
// gives the soft deadline before the hard one, and at the hard deadline
// exits, logging the step it abandoned.
func TestShutdownClock(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	exited := make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	clock := startShutdownClock(ctx, 300*time.Millisecond, zap.New(core), func(code int) { exited <- code })
	defer clock.stop()
	cancel()
	clock.setStep("closing the cache")
	soft, cancelSoft := clock.soft()
	defer cancelSoft()
	// The soft deadline comes before the hard one by construction; compare
	// the deadlines themselves, not times measured on a busy machine.
	softAt, ok := soft.Deadline()
	clock.mu.Lock()
	hardAt := clock.deadline
	clock.mu.Unlock()
	if !ok || !softAt.Before(hardAt) {
		t.Errorf("soft deadline %v (set %v), want before the hard one %v", softAt, ok, hardAt)
	}
	<-soft.Done()
	select {
	case code := <-exited:
		if code != 1 {
			t.Errorf("exit code %d, want 1", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the clock did not exit at its deadline")
	}
	if e := logs.All(); len(e) != 1 || !strings.Contains(e[0].ContextMap()["abandoned"].(string), "closing the cache") {
		t.Errorf("logs: %+v, want one error naming the abandoned step", e)
	}
}
