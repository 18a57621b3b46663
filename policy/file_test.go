package policy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// events records the events of a File.
type events struct {
	mu   sync.Mutex
	list []Event
}

func (e *events) add(_ context.Context, ev Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *events) kinds() []EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []EventKind
	for _, ev := range e.list {
		out = append(out, ev.Kind)
	}
	return out
}

func openTemp(t *testing.T, content string) (*File, string, *events) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	f.OnChange(ev.add)
	return f, path, ev
}

func TestOpenFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenFile(context.Background(), filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("mode: loud\n"), 0o644)
	var ve *ValidationError
	if _, err := OpenFile(context.Background(), bad, nil); !errors.As(err, &ve) || ve.Field != "mode" || !strings.Contains(err.Error(), bad) {
		t.Errorf("invalid file: %v", err)
	}
}

func TestReloadTakesValidEditsAndKeepsTheLastGood(t *testing.T) {
	ctx := context.Background()
	f, path, ev := openTemp(t, "mode: enforce\n")
	if err := f.Reload(ctx); err != nil || len(ev.kinds()) != 0 {
		t.Fatalf("unchanged file: %v, events %v", err, ev.kinds())
	}
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("default: deny\n")
	if err := f.Reload(ctx); err != nil || f.Current().Default != Deny {
		t.Fatalf("valid edit: %v, default %s", err, f.Current().Default)
	}
	good := f.Current()
	write("default: deny\nrules: [{id: x, action: deny, module: m}]\n") // no reason
	err := f.Reload(ctx)
	if !errors.Is(err, ErrFileInvalid) || !strings.Contains(err.Error(), "rules[0].reason") {
		t.Fatalf("invalid edit: %v", err)
	}
	if f.Current() != good {
		t.Fatal("an invalid edit replaced the policy")
	}
	f.Reload(ctx) // the same invalid content is reported once
	os.Remove(path)
	if err := f.Reload(ctx); !errors.Is(err, fs.ErrNotExist) || f.Current() != good {
		t.Fatalf("removed file: %v", err)
	}
	write("mode: report\n")
	if err := f.Reload(ctx); err != nil || f.Current().Mode != Report {
		t.Fatalf("fixed file: %v", err)
	}
	want := []EventKind{Reloaded, Refused, Refused, Reloaded}
	if got := ev.kinds(); !equalKinds(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	ev.mu.Lock()
	refused := ev.list[1]
	ev.mu.Unlock()
	if refused.Err == nil || refused.Before != good || !strings.Contains(string(refused.Content), "id: x") {
		t.Errorf("refused event: %+v", refused)
	}
}

func equalKinds(a, b []EventKind) bool {
	return strings.Join(kindStrings(a), ",") == strings.Join(kindStrings(b), ",")
}

func kindStrings(k []EventKind) []string {
	out := make([]string, len(k))
	for i, x := range k {
		out[i] = string(x)
	}
	return out
}

func TestWatchPicksUpEdits(t *testing.T) {
	f, path, _ := openTemp(t, "mode: enforce\n")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	os.WriteFile(path, []byte("mode: report\n"), 0o644)
	waitFor(t, func() bool { return f.Current().Mode == Report })
	os.WriteFile(path, []byte("mode: [\n"), 0o644)
	time.Sleep(50 * time.Millisecond)
	if f.Current().Mode != Report {
		t.Fatal("an invalid edit replaced the policy")
	}
	os.WriteFile(path, []byte("mode: enforce\n"), 0o644)
	waitFor(t, func() bool { return f.Current().Mode == Enforce })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5s")
}

func TestUpdateWritesAtomically(t *testing.T) {
	ctx := context.Background()
	f, path, ev := openTemp(t, "# hand-written\nmode: enforce\n")
	os.Chmod(path, 0o640)
	rule := Rule{ID: "d", Action: Deny, Module: "example.com/bad", Versions: "<v1.2.0", Reason: "CVE"}
	before, after, err := f.Update(ctx, func(p *Policy) error {
		p.Rules = append(p.Rules, rule)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Rules) != 0 || len(after.Rules) != 1 || f.Current() != after {
		t.Fatalf("before %+v after %+v", before, after)
	}
	data, _ := os.ReadFile(path)
	onDisk, err := Parse(data)
	if err != nil || onDisk.Rules[0] != rule || !strings.HasPrefix(string(data), Header) {
		t.Fatalf("file after Update: %v\n%s", err, data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the old 0640", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := f.Reload(ctx); err != nil || !equalKinds(ev.kinds(), []EventKind{Updated}) {
		t.Errorf("our own write was reloaded: %v %v", err, ev.kinds())
	}

	// An invalid change and an error from fn change nothing.
	_, _, err = f.Update(ctx, func(p *Policy) error { p.Rules = append(p.Rules, rule); return nil })
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "rules[1].id" {
		t.Errorf("duplicate rule: %v", err)
	}
	boom := errors.New("boom")
	if _, _, err := f.Update(ctx, func(p *Policy) error { p.Rules = nil; return boom }); err != boom {
		t.Errorf("fn error: %v", err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(data) || f.Current() != after {
		t.Error("a refused change touched the file or the policy")
	}
}

func TestUpdateLoadsPendingEditsAndRefusesOverInvalidFile(t *testing.T) {
	ctx := context.Background()
	f, path, ev := openTemp(t, "mode: enforce\n")
	os.WriteFile(path, []byte("default: deny\n"), 0o644)
	_, after, err := f.Update(ctx, func(p *Policy) error { p.DenyRetracted = true; return nil })
	if err != nil || after.Default != Deny || !after.DenyRetracted {
		t.Fatalf("update over a pending edit: %+v, %v", after, err)
	}
	os.WriteFile(path, []byte("default: nope\n"), 0o644)
	if _, _, err := f.Update(ctx, func(p *Policy) error { return nil }); !errors.Is(err, ErrFileInvalid) {
		t.Fatalf("update over an invalid file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "default: nope\n" {
		t.Fatal("Update overwrote a hand edit")
	}
	_, after, err = f.Replace(ctx, &Policy{Mode: Report})
	if err != nil || after.Mode != Report || after.Default != Allow || f.Current() != after {
		t.Fatalf("Replace: %+v, %v", after, err)
	}
	if _, err := OpenFile(ctx, path, nil); err != nil {
		t.Fatalf("file after Replace: %v", err)
	}
	want := []EventKind{Reloaded, Updated, Refused, Updated}
	if got := ev.kinds(); !equalKinds(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	if _, _, err := f.Replace(ctx, &Policy{Mode: "loud"}); err == nil {
		t.Error("Replace accepted an invalid policy")
	}
}

func TestUpdateFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	os.WriteFile(real, []byte("mode: enforce\n"), 0o644)
	link := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Skip(err)
	}
	f, err := OpenFile(context.Background(), link, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Update(context.Background(), func(p *Policy) error { p.Mode = Report; return nil }); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the symbolic link was replaced by a file")
	}
	if p, err := OpenFile(context.Background(), real, nil); err != nil || p.Current().Mode != Report {
		t.Errorf("target not updated: %v", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	f, _, _ := openTemp(t, "mode: enforce\n")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := f.Update(context.Background(), func(p *Policy) error {
				p.Rules = append(p.Rules, Rule{ID: "r" + string(rune('a'+i)), Action: Allow, Module: "m"})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(f.Current().Rules); n != 8 {
		t.Errorf("%d rules after 8 concurrent updates", n)
	}
}
