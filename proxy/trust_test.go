package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modgate/modgate/policy"
)

// TestTrustOfPrivateObjects stores a module's .mod and .zip while a
// private pattern covers it, so they are not checked against the checksum
// database, from an upstream that serves altered files. Once the pattern
// is removed, the cached copies are no longer trusted: they are fetched
// and verified again (502 while the upstream is altered, 504 offline), and
// the honest files are then stored as verified and served from the cache.
func TestTrustOfPrivateObjects(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{Dir: t.TempDir()})
	var cur atomic.Pointer[policy.Policy]
	withPrivate, err := policy.Parse([]byte("private:\n  - example.com/lib\n"))
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(withPrivate)
	tg.gate.cfg.Policy = cur.Load
	tg.fake.SetModMismatch(libV100, true)
	tg.fake.SetZipMismatch(libV100, true)
	paths := map[string]string{"mod": modPath(t, libV100, ".mod"), "zip": modPath(t, libV100, ".zip")}
	altered := map[string][]byte{}
	for kind, p := range paths {
		r := get(t, tg.url, p)
		if r.status != http.StatusOK {
			t.Fatalf("%s while private: %d %s", kind, r.status, r.body)
		}
		altered[kind] = r.body
	}
	tg.fake.ResetCounts()
	for kind, p := range paths { // private: served from the cache as stored
		if r := get(t, tg.url, p); r.status != http.StatusOK || !bytes.Equal(r.body, altered[kind]) {
			t.Fatalf("%s hit while private: %d", kind, r.status)
		}
	}
	if log := tg.fake.RequestLog(); len(log) != 0 {
		t.Fatalf("hits of private objects reached the upstream: %q", log)
	}

	cur.Store(&policy.Policy{}) // the pattern is removed
	for kind, p := range paths {
		t.Run(kind, func(t *testing.T) {
			tg.gate.cfg.Offline = true
			r := get(t, tg.url, p)
			checkErrorBody(t, kind+" offline", r, http.StatusGatewayTimeout, "no private pattern matches it now")
			tg.gate.cfg.Offline = false
			r = get(t, tg.url, p)
			checkErrorBody(t, kind+" from the altered upstream", r, http.StatusBadGateway, "checksum database says")
		})
	}
	tg.fake.SetModMismatch(libV100, false)
	tg.fake.SetZipMismatch(libV100, false)
	for kind, p := range paths {
		want := upstreamBytes(t, tg.fake, strings.TrimPrefix(p, ""))
		r := get(t, tg.url, p)
		if r.status != http.StatusOK || !bytes.Equal(r.body, want) || bytes.Equal(r.body, altered[kind]) {
			t.Fatalf("%s from the honest upstream: %d", kind, r.status)
		}
	}
	tg.fake.ResetCounts()
	for kind, p := range paths { // verified now: hits, even with the pattern back and gone again
		for _, p2 := range []*policy.Policy{withPrivate, {}} {
			cur.Store(p2)
			if r := get(t, tg.url, p); r.status != http.StatusOK || bytes.Equal(r.body, altered[kind]) {
				t.Fatalf("%s hit after verification: %d", kind, r.status)
			}
		}
	}
	for _, line := range tg.fake.RequestLog() {
		if !strings.Contains(line, "/sumdb/") {
			t.Errorf("a verified object was fetched again: %s", line)
		}
	}
}

// TestUnmarkedObjectsVerifiedAgain stores a verified .mod and .zip again
// without a trust mark, as a gate from before marks existed left them. A
// hit verifies such a copy against the checksum database instead of
// fetching it again: offline it is served from the stored record, and
// online the upstream is asked for no module file.
func TestUnmarkedObjectsVerifiedAgain(t *testing.T) {
	tg := newTestGate(t, nil, gateOptions{Dir: t.TempDir()})
	ctx := t.Context()
	paths := map[string]string{"mod": modPath(t, libV100, ".mod"), "zip": modPath(t, libV100, ".zip")}
	bodies := map[string][]byte{}
	for kind, p := range paths { // verified and stored, with the lookup record
		r := get(t, tg.url, p)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", kind, r.status, r.body)
		}
		bodies[kind] = r.body
	}
	unmark := func() {
		t.Helper()
		for kind, p := range paths {
			key := kind + "/" + strings.TrimPrefix(strings.TrimSuffix(p, "."+kind), "/")
			var err error
			if kind == "zip" {
				err = tg.gate.cfg.Cache.PutBlobMarked(ctx, key, bytes.NewReader(bodies[kind]),
					int64(len(bodies[kind])), trustUnknown)
			} else {
				err = tg.gate.cfg.Cache.PutMarked(ctx, key, bodies[kind], trustUnknown)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, offline := range []bool{true, false} {
		unmark()
		tg.fake.ResetCounts()
		tg.gate.cfg.Offline = offline
		for kind, p := range paths {
			if r := get(t, tg.url, p); r.status != http.StatusOK || !bytes.Equal(r.body, bodies[kind]) {
				t.Errorf("offline=%v: unmarked %s: %d %s", offline, kind, r.status, r.body)
			}
		}
		for _, line := range tg.fake.RequestLog() {
			if !strings.Contains(line, "/sumdb/") {
				t.Errorf("offline=%v: an unmarked object that verifies was fetched again: %s", offline, line)
			}
		}
	}
	tg.gate.cfg.Offline = false
	tg.fake.ResetCounts()
	for kind, p := range paths { // marked as verified by the check: plain hits now
		if r := get(t, tg.url, p); r.status != http.StatusOK {
			t.Errorf("%s after the check: %d", kind, r.status)
		}
	}
	if log := tg.fake.RequestLog(); len(log) != 0 {
		t.Errorf("hits after the check reached the upstream: %q", log)
	}
}
