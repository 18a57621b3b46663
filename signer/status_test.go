package signer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestStatusAndClearFork walks a fork through its life: evidence on
// record and failing closed, an operator clearing it (archived, never
// deleted), traffic resuming from the last witnessed tree head, the same
// fork caught again, and the state surviving a restart.
func TestStatusAndClearFork(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, m := range mods(5) {
		if _, err := f.w.Lookup(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	st, err := f.w.Status(ctx)
	if err != nil || st.Database != "sum.golang.org" || st.Tree == nil || st.Tree.Size != 5 || st.Forked || len(st.Evidence) != 0 {
		t.Fatalf("status before the fork: %+v, %v", st, err)
	}
	if !strings.Contains(st.Tree.Note, "\n5\n"+st.Tree.Hash+"\n") {
		t.Errorf("status note %q does not carry size 5 and hash %s", st.Tree.Note, st.Tree.Hash)
	}

	f.db.fork(t, mods(7)...)
	if _, _, err := f.w.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("Latest after the fork: %v, want ErrFork", err)
	}
	for name, read := range map[string]func() (Status, error){
		"running": func() (Status, error) { return f.w.Status(ctx) },
		"offline": func() (Status, error) { return ReadStatus(ctx, f.store, "sum.golang.org") },
	} {
		st, err := read()
		if err != nil || !st.Forked || len(st.Evidence) != 1 || st.Evidence[0].NewerSize != 7 || st.Tree.Size != 5 || len(st.Cleared) != 0 {
			t.Errorf("%s status after the fork: %+v, %v", name, st, err)
		}
	}

	done, err := f.w.ClearFork(ctx, "token:abcd1234")
	if err != nil || len(done) != 1 || done[0].ClearedBy != "token:abcd1234" || done[0].OlderSize != 5 || done[0].Key == "" {
		t.Fatalf("ClearFork = %+v, %v", done, err)
	}
	if f.w.Forked() {
		t.Errorf("still forked after ClearFork")
	}
	if keys := f.store.Keys("witness/sum.golang.org/evidence/"); len(keys) != 1 {
		t.Errorf("evidence keys after clearing: %q, want the record kept", keys)
	}
	if _, err := f.w.Lookup(ctx, mods(1)[0]); err != nil {
		t.Errorf("lookup of a witnessed record after clearing: %v", err)
	}

	// The upstream is still on the forked timeline: caught again.
	if _, _, err := f.w.Latest(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("Latest after clearing, upstream still forked: %v, want ErrFork", err)
	}
	st, _ = f.w.Status(ctx)
	if !st.Forked || len(st.Evidence) != 1 || len(st.Cleared) != 1 {
		t.Errorf("status after the second fork: forked %v, %d open, %d cleared; want true, 1, 1", st.Forked, len(st.Evidence), len(st.Cleared))
	}
	if w2 := f.reopen(t); !w2.Forked() {
		t.Errorf("a restart forgot the open evidence")
	}
	done, err = ClearFork(ctx, f.store, "sum.golang.org", "offline", time.Now())
	if err != nil || len(done) != 1 {
		t.Fatalf("offline ClearFork = %d cleared, %v; want only the new record", len(done), err)
	}
	if w3 := f.reopen(t); w3.Forked() {
		t.Errorf("forked after every record was cleared")
	}
	if again, _ := ClearFork(ctx, f.store, "sum.golang.org", "offline", time.Now()); len(again) != 0 {
		t.Errorf("clearing twice cleared %d records again", len(again))
	}
}

func TestReadStatusEmpty(t *testing.T) {
	st, err := ReadStatus(context.Background(), &MemStore{}, "sum.golang.org")
	if err != nil || st.Tree != nil || st.Forked || st.Evidence != nil {
		t.Errorf("ReadStatus of an empty store = %+v, %v", st, err)
	}
}
