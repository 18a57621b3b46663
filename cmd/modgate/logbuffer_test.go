package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// syncBuffer is a bytes.Buffer safe for the log's flushing goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogBuffer checks --log-flush-interval: info lines wait in the buffer
// until the interval passes or serve stops, warnings and errors are
// written at once, and 0 writes every line at once.
func TestLogBuffer(t *testing.T) {
	tests := []struct {
		name  string
		flush time.Duration
		log   func(*zap.Logger)
		now   bool // written before any flush
	}{
		{"info waits for the flush", time.Hour, func(l *zap.Logger) { l.Info("request") }, false},
		{"warn is written at once", time.Hour, func(l *zap.Logger) { l.Warn("client rejected") }, true},
		{"error is written at once", time.Hour, func(l *zap.Logger) { l.Error("fork detected") }, true},
		{"unbuffered writes info at once", 0, func(l *zap.Logger) { l.Info("request") }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			log, stop, err := newLogger("info", "json", tc.flush, &out)
			if err != nil {
				t.Fatal(err)
			}
			tc.log(log.Named("access"))
			if got := strings.Contains(out.String(), `"logger":"access"`); got != tc.now {
				t.Errorf("line written before a flush: %v, want %v (%q)", got, tc.now, out.String())
			}
			stop()
			if got := strings.Count(out.String(), "\n"); got != 1 {
				t.Errorf("%d lines after stop, want 1: %q", got, out.String())
			}
		})
	}
	t.Run("the interval flushes", func(t *testing.T) {
		var out syncBuffer
		log, stop, err := newLogger("info", "json", 20*time.Millisecond, &out)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		log.Info("request")
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), `"msg":"request"`) {
			if time.Now().After(deadline) {
				t.Fatal("the buffered line was not written within 5s of a 20ms interval")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	if _, _, err := newLogger("info", "json", -time.Second, &syncBuffer{}); err == nil {
		t.Error("a negative --log-flush-interval was accepted")
	}
}
