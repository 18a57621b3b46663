package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"

	"github.com/modgate/modgate/proxy"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows a person at a terminal what serve is doing: its start-up
// steps and, while it serves, a summary line whenever the traffic has
// changed. Off a terminal it says nothing: the logs are for machines.
type progress struct {
	w  io.Writer
	on bool
}

// step prints one line of progress.
func (p progress) step(format string, args ...any) {
	if p.on {
		fmt.Fprintf(p.w, "modgate: "+format+"\n", args...)
	}
}

// watch prints a summary of the traffic every interval in which it changed,
// until ctx ends.
func (p progress) watch(ctx context.Context, m *proxy.Metrics, interval time.Duration) {
	if !p.on {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last proxy.Summary
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := m.Summary()
		if s == last {
			continue
		}
		last = s
		ratio := 0.0
		if s.Cacheable > 0 {
			ratio = 100 * float64(s.Hits) / float64(s.Cacheable)
		}
		p.step(
			"%d requests, %.0f%% from the cache, %s served, %d refused",
			s.Requests,
			ratio,
			humanize.IBytes(uint64(s.Served)),
			s.Refused,
		)
	}
}
