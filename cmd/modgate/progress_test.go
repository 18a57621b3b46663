package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/proxy"
)

func TestProgressOnlyOnATerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   bool
		want string
	}{
		{"terminal", true, "modgate: serving on x\n"},
		{"not a terminal", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := progress{w: &buf, on: tc.on}
			p.step("serving on %s", "x")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			p.watch(ctx, proxy.NewMetrics(prometheus.NewRegistry()), 5*time.Millisecond) // no traffic: no summary
			if buf.String() != tc.want {
				t.Errorf("output %q, want %q", buf.String(), tc.want)
			}
		})
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
