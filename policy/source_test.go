package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// memSource is an in-memory Source: one document and its version.
type memSource struct {
	mu   sync.Mutex
	data []byte
	ver  int64
}

func (s *memSource) Load(context.Context) ([]byte, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data, s.ver, nil
}

func (s *memSource) Store(_ context.Context, data []byte, ver int64) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ver != s.ver {
		return 0, false, nil
	}
	s.data, s.ver = data, s.ver+1
	return s.ver, true, nil
}

const seedPolicy = "rules:\n  - id: seed\n    action: deny\n    module: example.com/bad\n    reason: seeded\n"

// TestSourceSeedsSyncsAndIgnoresHandEdits: the first gate's file seeds
// the shared policy and a second gate's file does not; a change through
// one gate reaches the other on Reload (a Synced event); a change made on
// a stale view is applied again to the newer policy; an edit of a gate's
// file is never read, and the next change rewrites it.
func TestSourceSeedsSyncsAndIgnoresHandEdits(t *testing.T) {
	ctx := context.Background()
	src := &memSource{}
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	os.WriteFile(pathA, []byte(seedPolicy), 0o644)
	os.WriteFile(pathB, []byte("rules: []\n"), 0o644)
	a, err := OpenSource(ctx, src, pathA, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenSource(ctx, src, pathB, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Current().Rules) != 1 || b.Current().Rules[0].ID != "seed" {
		t.Fatalf("gate b's policy is not the seeded one: %+v", b.Current().Rules)
	}
	if got, _ := os.ReadFile(pathB); !strings.Contains(string(got), "seed") {
		t.Fatalf("gate b's file does not mirror the shared policy:\n%s", got)
	}
	var events []EventKind
	b.OnChange(func(_ context.Context, ev Event) { events = append(events, ev.Kind) })
	addRule := func(id string) func(p *Policy) error {
		return func(p *Policy) error {
			p.Rules = append(p.Rules, Rule{ID: id, Action: Deny, Module: "example.com/" + id, Reason: "r"})
			return nil
		}
	}
	if _, _, err := a.Update(ctx, addRule("one")); err != nil {
		t.Fatal(err)
	}
	// b has not reloaded: its Update is applied again to a's policy.
	if _, after, err := b.Update(ctx, addRule("two")); err != nil || len(after.Rules) != 3 {
		t.Fatalf("b's update on a stale view: %v, %d rules, want 3", err, len(after.Rules))
	}
	if err := a.Reload(ctx); err != nil || len(a.Current().Rules) != 3 {
		t.Fatalf("a after Reload: %v, %d rules", err, len(a.Current().Rules))
	}
	if len(events) == 0 || events[0] != Synced {
		t.Errorf("b's events %v, want a Synced first", events)
	}
	os.WriteFile(pathA, []byte("rules: []\n"), 0o644)
	if err := a.Reload(ctx); err != nil || len(a.Current().Rules) != 3 {
		t.Fatalf("a after a hand edit: %v, %d rules, want the 3 shared ones", err, len(a.Current().Rules))
	}
	if _, _, err := b.Update(ctx, addRule("three")); err != nil {
		t.Fatal(err)
	}
	a.Reload(ctx)
	if got, _ := os.ReadFile(pathA); !strings.Contains(string(got), "three") {
		t.Fatalf("gate a's file after the next change:\n%s", got)
	}
}
