package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/policy"
)

// cachedWithin reports whether key is in tg's cache within d.
func cachedWithin(t *testing.T, tg *testGate, key string, d time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if _, err := tg.cache.Get(t.Context(), key); err == nil || time.Now().After(deadline) {
			return err == nil
		}
	}
}

// TestPrefetchRequires checks that the go.mod of example.com/lib v1.2.0,
// fetched for a client, makes the gate fetch and verify the go.mod it
// requires (example.com/dep v1.0.0), and lib's own .info, before any
// client asks, so that the client's requests are hits (and the first hit
// of dep's go.mod brings dep's .info ahead in turn); and that it does not when prefetching is off,
// when the policy denies the requirement (enforced or in report mode), or
// when the client's go.mod was a cache hit.
func TestPrefetchRequires(t *testing.T) {
	libV120 := module.Version{Path: "example.com/lib", Version: "v1.2.0"}
	depV100 := module.Version{Path: "example.com/dep", Version: "v1.0.0"}
	denyDep := []policy.Rule{{ID: "no-dep", Action: policy.Deny, Module: "example.com/dep", Reason: "test"}}
	tests := []struct {
		name     string
		prefetch int
		policy   *policy.Policy
		warm     bool // lib's go.mod is cached before the client asks
		want     bool // dep's go.mod is fetched ahead
	}{
		{"requirement fetched ahead", 2, nil, false, true},
		{"off", 0, nil, false, false},
		{"requirement denied", 2, &policy.Policy{Rules: denyDep}, false, false},
		{"requirement denied in report mode", 2, &policy.Policy{Mode: policy.Report, Rules: denyDep}, false, false},
		{"client's go.mod a hit", 2, nil, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{Prefetch: tt.prefetch, Policy: tt.policy})
			libPath, depPath := modPath(t, libV120, ".mod"), modPath(t, depV100, ".mod")
			depKey := "mod/example.com/dep/@v/v1.0.0"
			if tt.warm {
				tg.gate.prefetch.running.Store(false) // the first fetch queues nothing
				if r := get(t, tg.url, libPath); r.status != http.StatusOK {
					t.Fatalf("warming: %d %s", r.status, r.body)
				}
				tg.gate.prefetch.running.Store(true)
			}
			if r := get(t, tg.url, libPath); r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", libPath, r.status, r.body)
			}
			// Wait for the prefetch, or give it time to happen wrongly.
			wait := time.Second
			if tt.want {
				wait = 10 * time.Second
			}
			if got := cachedWithin(t, tg, depKey, wait); got != tt.want {
				t.Fatalf("dep's go.mod cached before any client asked: %v, want %v (upstream requests %d)",
					got, tt.want, tg.fake.Requests(depPath))
			}
			if !tt.want {
				if n := tg.fake.Requests(depPath); n != 0 {
					t.Fatalf("%d upstream requests for %s, want none", n, depPath)
				}
				return
			}
			if n := tg.fake.Requests(depPath); n != 1 {
				t.Fatalf("%d upstream requests for %s, want the prefetch's 1", n, depPath)
			}
			// lib's own .info is fetched ahead too.
			infoPath := modPath(t, libV120, ".info")
			if !cachedWithin(t, tg, "info/example.com/lib/@v/v1.2.0", 10*time.Second) ||
				tg.fake.Requests(infoPath) != 1 {
				t.Fatalf("lib's .info not fetched ahead (%d upstream requests)", tg.fake.Requests(infoPath))
			}
			if r := get(t, tg.url, infoPath); r.status != http.StatusOK || tg.fake.Requests(infoPath) != 1 {
				t.Fatalf("GET %s after the prefetch: %d, %d upstream requests; want a hit", infoPath, r.status,
					tg.fake.Requests(infoPath))
			}
			if _, err := tg.cache.Get(t.Context(), "info/example.com/dep/@v/v1.0.0"); err == nil {
				t.Fatal("dep's .info fetched ahead before a client asked for dep's go.mod")
			}
			r := get(t, tg.url, depPath)
			if n := tg.fake.Requests(depPath); r.status != http.StatusOK || n != 1 {
				t.Fatalf("GET %s after the prefetch: %d, %d upstream requests; want a hit", depPath, r.status, n)
			}
			// dep's go.mod, fetched ahead and now asked for, brings its own
			// .info ahead as a client's fetch would.
			if !cachedWithin(t, tg, "info/example.com/dep/@v/v1.0.0", 10*time.Second) {
				t.Fatal("dep's .info not fetched ahead once a client asked for its go.mod")
			}
			if want := upstreamBytes(t, tg.fake, depPath); string(r.body) != string(want) {
				t.Fatalf("GET %s after the prefetch: other bytes than the upstream's", depPath)
			}
		})
	}
}

// TestPrefetchHostileGoMod feeds prefetchRequires a go.mod as an upstream
// could write it (verified against the checksum database does not make
// it friendly): more requirements than prefetchPerFile, invalid module
// paths, versions the go command reads leniently (v1, +build), the same
// requirement twice, a version that does not parse, and a file that is no
// go.mod. Only valid requirements are queued, as the go command reads
// them, at most prefetchPerFile of them and each once; a file that does
// not parse queues its own .info and nothing else.
func TestPrefetchHostileGoMod(t *testing.T) {
	var many strings.Builder
	many.WriteString("module example.com/hostile\n\n")
	for i := range prefetchPerFile + 50 {
		fmt.Fprintf(&many, "require example.com/r%03d v1.0.0\n", i)
	}
	tests := []struct {
		name     string
		gomod    string
		wantMods []string // the go.mod files queued, in order
	}{
		{"too many requirements", many.String(), nil}, // checked by count below
		{"invalid paths, versions as the go command reads them, a repeat", `module example.com/hostile
require (
	../escape v1.0.0
	example.com/UP!per v1.0.0
	example.com/ok v1.2.3
	example.com/ok v1.2.3
	example.com/short v1
	example.com/meta v1.0.0+build
	example.com/pseudo v0.0.0-20240101000000-abcdefabcdef
)
`, []string{"mod/example.com/ok/@v/v1.2.3", "mod/example.com/short/@v/v1.0.0", "mod/example.com/meta/@v/v1.0.0",
			"mod/example.com/pseudo/@v/v0.0.0-20240101000000-abcdefabcdef"}},
		{"a version that does not parse", "module example.com/hostile\nrequire example.com/ok v1.2.3\n" +
			"require example.com/branch master\n", []string{}},
		{"not a go.mod", "\x00\x01 require (((", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGate(t, nil, gateOptions{})
			g := tg.gate
			// Queues with no workers: what is queued stays there to look at.
			g.prefetch.infos = make(chan Request, prefetchQueue)
			g.prefetch.mods = make(chan Request, prefetchQueue)
			g.prefetch.running.Store(true)
			req, err := internalRequest(KindMod, "example.com/hostile", "v1.0.0")
			if err != nil {
				t.Fatal(err)
			}
			g.prefetchRequires(t.Context(), req, []byte(tt.gomod), cacheMiss)
			if n := len(g.prefetch.infos); n != 1 {
				t.Errorf("%d .info files queued, want the go.mod's own", n)
			}
			var got []string
			for len(g.prefetch.mods) > 0 {
				r := <-g.prefetch.mods
				if r.Kind != KindMod || module.Check(r.Module, r.Version) != nil ||
					module.CanonicalVersion(r.Version) != r.Version {
					t.Errorf("queued %+v", r)
				}
				got = append(got, r.cacheKey())
			}
			if tt.wantMods == nil {
				if len(got) != prefetchPerFile {
					t.Fatalf("%d go.mod files queued, want at most %d", len(got), prefetchPerFile)
				}
				return
			}
			if strings.Join(got, " ") != strings.Join(tt.wantMods, " ") {
				t.Fatalf("queued %q, want %q", got, tt.wantMods)
			}
		})
	}
}
