package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/fakeupstream"
	"github.com/modgate/modgate/policy"
)

// archive is a txtar test module of example.com/backdated whose .info
// claims the given time.
func backdatedArchive(version, infoTime string) []byte {
	return fmt.Appendf(nil, `-- .mod --
module example.com/backdated

go 1.21
-- .info --
{"Version":%q,"Time":%q}
-- go.mod --
module example.com/backdated

go 1.21
-- b.go --
package backdated

const Version = %q
`, version, infoTime, version)
}

// publish adds example.com/backdated@version to the fake upstream: its
// record is appended to the checksum database at once.
func publish(t *testing.T, fake *fakeupstream.Server, version, infoTime string) {
	t.Helper()
	if _, err := fake.AddArchive("example.com_backdated_"+version+".txt", backdatedArchive(version, infoTime)); err != nil {
		t.Fatal(err)
	}
}

// TestCooldownDatesByTheWitness checks that a version whose record was
// appended after the gate's first witnessed tree head is held back by the
// cooldown whatever its .info claims, on every path that serves it, and
// that a version already in the first witnessed tree is dated by its .info.
func TestCooldownDatesByTheWitness(t *testing.T) {
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	publish(t, fake, "v0.9.0", fakeupstream.NowPlaceholder) // before the gate's first witness, and fresh
	publish(t, fake, "v1.0.0", "2019-01-01T00:00:00Z")      // before the gate's first witness
	p := &policy.Policy{Cooldown: 72 * time.Hour}
	tg := newTestGate(t, fake, gateOptions{Policy: p})
	if _, _, err := tg.witness.Latest(t.Context()); err != nil { // the first poll
		t.Fatal(err)
	}
	tg.clock.Advance(time.Hour)
	publish(t, fake, "v1.1.0", "2019-01-01T00:00:00Z")           // backdated, appended after it
	if _, _, err := tg.witness.Latest(t.Context()); err != nil { // the next poll
		t.Fatal(err)
	}
	tg.clock.Advance(time.Hour)

	denied := []string{
		"/example.com/backdated/@v/v1.1.0.info",
		"/example.com/backdated/@v/v1.1.0.mod",
		"/example.com/backdated/@v/v1.1.0.zip",
		"/sumdb/sum.golang.org/lookup/example.com/backdated@v1.1.0",
	}
	for _, path := range denied {
		t.Run("refused "+path, func(t *testing.T) {
			r := get(t, tg.url, path)
			body := string(r.body)
			if r.status != http.StatusForbidden || !strings.Contains(body, "denied by policy rule cooldown: first seen in the checksum database 1h ago (") ||
				!strings.Contains(body, "within the 72h cooldown; its .info claims 2019-01-01T00:00:00Z") {
				t.Errorf("GET %s: %d %q; want 403 naming both times", path, r.status, body)
			}
		})
	}
	t.Run("dated by .info before the first witness", func(t *testing.T) {
		if r := get(t, tg.url, "/example.com/backdated/@v/v1.0.0.info"); r.status != http.StatusOK {
			t.Errorf("v1.0.0.info: %d %s", r.status, r.body)
		}
	})
	t.Run("list leaves the backdated version out", func(t *testing.T) {
		// v1.0.0 is past the cooldown; nothing of v0.9.0 is cached, so it is
		// listed with its time unknown (its own files are decided on its dates).
		if r := get(t, tg.url, "/example.com/backdated/@v/list"); r.status != http.StatusOK || string(r.body) != "v0.9.0\nv1.0.0\n" {
			t.Errorf("list: %d %q, want v0.9.0 and v1.0.0", r.status, r.body)
		}
	})
	t.Run("dated by a fresh .info before the first witness", func(t *testing.T) {
		r := get(t, tg.url, "/example.com/backdated/@v/v0.9.0.info")
		if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "its .info Time), within the 72h cooldown; record ") ||
			!strings.Contains(string(r.body), "predates the gate's first witnessed tree head, so only its .info dates it") {
			t.Errorf("v0.9.0.info: %d %q, want 403 dated by its .info", r.status, r.body)
		}
	})
	t.Run("list dates the older versions by what is cached", func(t *testing.T) {
		if r := get(t, tg.url, "/example.com/backdated/@v/list"); r.status != http.StatusOK || string(r.body) != "v1.0.0\n" {
			t.Errorf("list: %d %q, want v1.0.0 only once v0.9.0's .info is cached", r.status, r.body)
		}
	})
	t.Run("@latest of a backdated version is 404", func(t *testing.T) {
		if r := get(t, tg.url, "/example.com/backdated/@latest"); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "first seen in the checksum database") {
			t.Errorf("@latest: %d %q, want 404 naming the cooldown", r.status, r.body)
		}
	})

	tg.clock.Advance(71 * time.Hour) // 72h after the record was first seen
	t.Run("past the cooldown", func(t *testing.T) {
		for _, path := range append(denied, "/example.com/backdated/@latest") {
			if r := get(t, tg.url, path); r.status != http.StatusOK {
				t.Errorf("GET %s: %d %s", path, r.status, r.body)
			}
		}
		if r := get(t, tg.url, "/example.com/backdated/@v/list"); string(r.body) != "v0.9.0\nv1.0.0\nv1.1.0\n" {
			t.Errorf("list: %q, want every version", r.body)
		}
	})
}

// TestCooldownListDatesEachNewVersion checks that list filtering does not
// take a backdated newest version as proof that the ones below are old.
func TestCooldownListDatesEachNewVersion(t *testing.T) {
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	publish(t, fake, "v1.0.0", "2019-01-01T00:00:00Z")
	tg := newTestGate(t, fake, gateOptions{Policy: &policy.Policy{Cooldown: 72 * time.Hour}})
	if _, _, err := tg.witness.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	tg.clock.Advance(100 * time.Hour)
	publish(t, fake, "v1.1.0", fakeupstream.NowPlaceholder) // honest and fresh
	tg.clock.Advance(time.Hour)
	publish(t, fake, "v1.2.0", "2019-01-01T00:00:00Z") // backdated
	if r := get(t, tg.url, "/example.com/backdated/@v/list"); string(r.body) != "v1.0.0\n" {
		t.Errorf("list: %q, want v1.0.0 only", r.body)
	}
}

// TestUnknownFactsNeverFail checks that offline, with every policy feature
// on, a fact the gate cannot establish fails nothing: list, .info, .mod and
// .zip of what is cached answer 200, and what is not cached answers 504
// for itself, not for a fact.
func TestUnknownFactsNeverFail(t *testing.T) {
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	dir := t.TempDir()
	p := &policy.Policy{Cooldown: 72 * time.Hour, DenyRetracted: true, Private: []string{"corp.example.com"},
		Rules: []policy.Rule{{ID: "bad", Action: policy.Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "CVE-2099-0001"}}}
	online := newTestGate(t, fake, gateOptions{Dir: dir})
	for _, path := range []string{"/example.com/lib/@v/list", "/example.com/lib/@v/v1.1.0.mod", "/example.com/lib/@v/v1.1.0.zip", "/example.com/lib/@v/v1.0.0.info"} {
		if r := get(t, online.url, path); r.status != http.StatusOK {
			t.Fatalf("online GET %s: %d %s", path, r.status, r.body)
		}
	}
	online.close(t)
	off := newTestGate(t, fake, gateOptions{Dir: dir, Offline: true, Policy: p, Key: online.key})
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/example.com/lib/@v/list", http.StatusOK, "v1.0.0\nv1.1.0\nv1.2.0\n"},
		{"/example.com/lib/@v/v1.1.0.mod", http.StatusOK, ""}, // .info not cached: dated by the record only
		{"/example.com/lib/@v/v1.1.0.zip", http.StatusOK, ""},
		{"/example.com/lib/@v/v1.0.0.info", http.StatusOK, ""},
		{"/example.com/lib/@v/v1.2.0.info", http.StatusGatewayTimeout, "example.com/lib@v1.2.0: not in the cache"},
		{"/example.com/bad/@v/v1.1.0.info", http.StatusForbidden, "CVE-2099-0001"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := get(t, off.url, tt.path)
			if r.status != tt.status || !strings.Contains(string(r.body), tt.body) {
				t.Errorf("offline GET %s: %d %q; want %d %q", tt.path, r.status, r.body, tt.status, tt.body)
			}
		})
	}
	facts, err := off.gate.Facts(t.Context(), "example.com/lib", "v1.2.0")
	if err == nil || !facts.Published.IsZero() {
		t.Errorf("Facts of an uncached version offline = %+v, %v; want unknown, with the reason", facts, err)
	}
}

// TestUnknownFactsNeverFailOnline checks that an upstream failure while
// gathering a fact (the module's list, for its retractions) leaves the
// fact unknown instead of failing the request.
func TestUnknownFactsNeverFailOnline(t *testing.T) {
	fake := fakeupstream.Start(t, fakeupstream.Options{})
	p := &policy.Policy{DenyRetracted: true, Cooldown: 72 * time.Hour}
	tg := newTestGate(t, fake, gateOptions{Policy: p})
	fake.SetStatus("/example.com/lib/@v/list", http.StatusInternalServerError)
	if r := get(t, tg.url, "/example.com/lib/@v/v1.0.0.info"); r.status != http.StatusOK {
		t.Errorf(".info while the module's list fails upstream: %d %s, want 200", r.status, r.body)
	}
	facts, err := tg.gate.Facts(t.Context(), "example.com/lib", "v1.0.0")
	if err == nil || !strings.Contains(err.Error(), "reading the versions of example.com/lib") || facts.RetractedKnown {
		t.Errorf("Facts = %+v, %v; want the retraction unknown, with the reason", facts, err)
	}
	if facts.InfoTime.IsZero() || !facts.BeforeWitness {
		t.Errorf("Facts = %+v; want the .info time, and a record before the first witnessed head", facts)
	}
}
