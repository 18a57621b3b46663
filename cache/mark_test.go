package cache

import (
	"bytes"
	"context"
	"testing"
)

// TestMarks checks that the byte stored with a small value or a blob comes
// back with it, is replaced by the next write (0 for Put and PutBlob), and
// survives a restart.
func TestMarks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir, Now: fixedNow, ChunkSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		put  func() error
		want byte
	}{
		{"small marked", func() error { return s.PutMarked(ctx, "mod/a", []byte("x"), 7) }, 7},
		{"small replaced by Put", func() error { return s.Put(ctx, "mod/a", []byte("y")) }, 0},
		{"small marked again", func() error { return s.PutMarked(ctx, "mod/a", []byte("z"), 2) }, 2},
	}
	for _, st := range steps {
		if err := st.put(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if e, err := s.Get(ctx, "mod/a"); err != nil || e.Mark != st.want {
			t.Errorf("%s: Get = mark %d, %v; want %d", st.name, e.Mark, err, st.want)
		}
	}
	blobMark := func(key string) byte {
		t.Helper()
		b, err := s.OpenBlob(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		return b.Mark()
	}
	data := []byte("a blob of several chunks")
	if err := s.PutBlobMarked(ctx, "zip/a", bytes.NewReader(data), int64(len(data)), 1); err != nil {
		t.Fatal(err)
	}
	if m := blobMark("zip/a"); m != 1 {
		t.Errorf("blob mark %d, want 1", m)
	}
	if err := s.PutBlob(ctx, "zip/b", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if m := blobMark("zip/b"); m != 0 {
		t.Errorf("unmarked blob has mark %d", m)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Dir: dir, Now: fixedNow, ChunkSize: 4})
	if e, err := s.Get(ctx, "mod/a"); err != nil || e.Mark != 2 || string(e.Value) != "z" {
		t.Errorf("after a restart: %q mark %d, %v", e.Value, e.Mark, err)
	}
	if m := blobMark("zip/a"); m != 1 {
		t.Errorf("blob mark after a restart %d, want 1", m)
	}
}
