package proxy

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time the test process has used so far.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestGateHostileTilePaths asks an online and an offline gate, with no
// credentials, for tiles outside the witnessed tree (a level whose shift
// is 64 bits or more, past the tree, a width the tree lacks): each is 404
// well under a second, and the gate's CPU is idle afterwards.
func TestGateHostileTilePaths(t *testing.T) {
	paths := []string{
		"/sumdb/sum.golang.org/tile/8/1000000000000000/000.p/1",
		"/sumdb/sum.golang.org/tile/8/8/000.p/1",
		"/sumdb/sum.golang.org/tile/8/8/x001/000",
		"/sumdb/sum.golang.org/tile/8/9/000.p/255",
		"/sumdb/sum.golang.org/tile/8/63/000.p/1",
		"/sumdb/sum.golang.org/tile/8/3/000.p/7",
		"/sumdb/sum.golang.org/tile/8/0/x999/x999/x999/x999/x999/999.p/1",
		"/sumdb/sum.golang.org/tile/8/0/001.p/1",
		"/sumdb/sum.golang.org/tile/8/0/000",
	}
	for _, offline := range []bool{false, true} {
		name := "online"
		if offline {
			name = "offline"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tg := newTestGate(t, nil, gateOptions{Dir: dir})
			if r := get(t, tg.url, "/sumdb/sum.golang.org/lookup/example.com/lib@v1.0.0"); r.status != http.StatusOK {
				t.Fatalf("lookup: %d %q", r.status, r.body)
			}
			if offline {
				tg.close(t)
				tg = newTestGate(t, tg.fake, gateOptions{Dir: dir, Offline: true, Key: tg.key})
			}
			client := &http.Client{Timeout: 5 * time.Second}
			for _, p := range paths {
				start := time.Now()
				r := do(t, client, http.MethodGet, tg.url, p)
				if took := time.Since(start); took > 500*time.Millisecond {
					t.Errorf("GET %s took %v", p, took)
				}
				if r.status != http.StatusNotFound {
					t.Errorf("GET %s: %d %q, want 404", p, r.status, r.body)
				}
			}
			time.Sleep(100 * time.Millisecond)
			before := cpuTime(t)
			time.Sleep(time.Second)
			if used := cpuTime(t) - before; used > 300*time.Millisecond {
				t.Errorf("the gate used %v of CPU in the second after the requests", used)
			}
		})
	}
}
