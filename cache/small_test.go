package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestGetPut(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		puts    map[string]string
		key     string
		want    string
		wantErr error
	}{
		{"present", map[string]string{"mod/m/@v/v1.mod": "module m\n"}, "mod/m/@v/v1.mod", "module m\n", nil},
		{"empty value", map[string]string{"list/m": ""}, "list/m", "", nil},
		{"absent", map[string]string{"mod/a": "x"}, "mod/b", "", ErrNotFound},
		{"no slash", map[string]string{"witness": "state"}, "witness", "state", nil},
		{"looks internal", map[string]string{"c/x": "v"}, "c/x", "v", nil},
		{"empty key", nil, "", "", ErrInvalidKey},
		{"NUL in key", nil, "mod/a\x00b", "", ErrInvalidKey},
		{"too long", nil, strings.Repeat("k", MaxKeyLen+1), "", ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(t, 0)
			for k, v := range tt.puts {
				if err := s.Put(ctx, k, []byte(v)); err != nil {
					t.Fatalf("Put(%q): %v", k, err)
				}
			}
			e, err := s.Get(ctx, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%q) error = %v, want %v", tt.key, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if string(e.Value) != tt.want || e.Value == nil {
				t.Errorf("Get(%q) = %q, want %q", tt.key, e.Value, tt.want)
			}
			if !e.Stored.Equal(testEpoch) {
				t.Errorf("Stored = %v, want %v", e.Stored, testEpoch)
			}
		})
	}
}

func TestPutRejectsBadKeys(t *testing.T) {
	s := newMemStore(t, 0)
	ctx := context.Background()
	for _, key := range []string{"", "a\x00", strings.Repeat("k", MaxKeyLen+1)} {
		if err := s.Put(ctx, key, nil); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%.10q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.PutBlob(ctx, key, strings.NewReader(""), 0); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PutBlob(%.10q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

func TestPutOverwritesAndRecordsTime(t *testing.T) {
	clock := &fakeClock{t: testEpoch}
	s := openStore(t, Config{InMemory: true, Now: clock.now})
	ctx := context.Background()
	if err := s.Put(ctx, "list/m", []byte("v1.0.0\n")); err != nil {
		t.Fatal(err)
	}
	clock.t = testEpoch.Add(90e9)
	if err := s.Put(ctx, "list/m", []byte("v1.0.0\nv1.1.0\n")); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get(ctx, "list/m")
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Value) != "v1.0.0\nv1.1.0\n" || !e.Stored.Equal(clock.t) {
		t.Errorf("Get = %q at %v, want the second Put at %v", e.Value, e.Stored, clock.t)
	}
}

func TestCanceledContext(t *testing.T) {
	s := newMemStore(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]error{
		"Get":            func() error { _, err := s.Get(ctx, "k"); return err }(),
		"Put":            s.Put(ctx, "k", nil),
		"CompareAndSwap": s.CompareAndSwap(ctx, "k", nil, nil),
		"Delete":         s.Delete(ctx, "k"),
		"Scan":           s.Scan(ctx, "", nil),
		"PutBlob":        s.PutBlob(ctx, "k", strings.NewReader(""), 0),
		"OpenBlob":       func() error { _, err := s.OpenBlob(ctx, "k"); return err }(),
		"Stats":          func() error { _, err := s.Stats(ctx); return err }(),
	}
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s = %v, want context.Canceled", name, err)
		}
	}
}

func TestCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		initial  []byte // nil: key absent
		old, new []byte
		wantErr  error
		want     []byte // nil: key absent afterwards
	}{
		{"absent, expect absent", nil, nil, []byte("a"), nil, []byte("a")},
		{"absent, expect value", nil, []byte("a"), []byte("b"), ErrConflict, nil},
		{"absent, expect empty", nil, []byte{}, []byte("b"), ErrConflict, nil},
		{"match", []byte("a"), []byte("a"), []byte("b"), nil, []byte("b")},
		{"mismatch", []byte("a"), []byte("x"), []byte("b"), ErrConflict, []byte("a")},
		{"present, expect absent", []byte("a"), nil, []byte("b"), ErrConflict, []byte("a")},
		{"empty matches empty", []byte{}, []byte{}, []byte("b"), nil, []byte("b")},
		{"empty is not absent", []byte{}, nil, []byte("b"), ErrConflict, []byte{}},
		{"nil new stores empty", []byte("a"), []byte("a"), nil, nil, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(t, 0)
			if tt.initial != nil {
				if err := s.Put(ctx, "witness/state", tt.initial); err != nil {
					t.Fatal(err)
				}
			}
			err := s.CompareAndSwap(ctx, "witness/state", tt.old, tt.new)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CompareAndSwap = %v, want %v", err, tt.wantErr)
			}
			e, err := s.Get(ctx, "witness/state")
			switch {
			case tt.want == nil && !errors.Is(err, ErrNotFound):
				t.Errorf("after: Get = %q, %v; want ErrNotFound", e.Value, err)
			case tt.want != nil && (err != nil || !bytes.Equal(e.Value, tt.want)):
				t.Errorf("after: Get = %q, %v; want %q", e.Value, err, tt.want)
			}
		})
	}
}

func TestCompareAndSwapIsAtomic(t *testing.T) {
	s := newMemStore(t, 0)
	ctx := context.Background()
	const workers, increments = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range increments {
				if err := increment(ctx, s, "counter/n"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	e, err := s.Get(ctx, "counter/n")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(e.Value); got != strconv.Itoa(workers*increments) {
		t.Errorf("counter = %s, want %d", got, workers*increments)
	}
}

// increment adds one to the decimal counter under key with CompareAndSwap.
func increment(ctx context.Context, s *Store, key string) error {
	for {
		var old []byte
		n := 0
		e, err := s.Get(ctx, key)
		switch {
		case err == nil:
			old = e.Value
			if n, err = strconv.Atoi(string(old)); err != nil {
				return err
			}
		case !errors.Is(err, ErrNotFound):
			return err
		}
		err = s.CompareAndSwap(ctx, key, old, []byte(strconv.Itoa(n+1)))
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 0)
	for _, k := range []string{"mod/b", "mod/a", "info/a", "mod/c/d", "modx", "list/a"} {
		if err := s.Put(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutBlob(ctx, "mod/blob", strings.NewReader("blob"), 4); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"mod/", []string{"mod/a", "mod/b", "mod/c/d"}},
		{"mod", []string{"mod/a", "mod/b", "mod/c/d", "modx"}},
		{"", []string{"info/a", "list/a", "mod/a", "mod/b", "mod/c/d", "modx"}},
		{"zip/", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.prefix), func(t *testing.T) {
			var got []string
			err := s.Scan(ctx, tt.prefix, func(key string, e Entry) error {
				if string(e.Value) != "value of "+key || !e.Stored.Equal(testEpoch) {
					t.Errorf("entry of %q = %q at %v", key, e.Value, e.Stored)
				}
				got = append(got, key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Scan keys = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("stops at error", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := s.Scan(ctx, "", func(string, Entry) error { n++; return stop })
		if err != stop || n != 1 {
			t.Errorf("Scan = %v after %d calls, want stop after 1", err, n)
		}
	})
}

func TestDelete(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		small, blob bool
	}{
		{"absent", false, false},
		{"small", true, false},
		{"blob", false, true},
		{"both", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newMemStore(t, 3)
			const key = "zip/m/@v/v1.0.0.zip"
			if tt.small {
				if err := s.Put(ctx, key, []byte("small")); err != nil {
					t.Fatal(err)
				}
			}
			if tt.blob {
				if err := s.PutBlob(ctx, key, strings.NewReader("0123456789"), 10); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Delete(ctx, key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.Get(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after Delete = %v, want ErrNotFound", err)
			}
			if _, err := s.OpenBlob(ctx, key); !errors.Is(err, ErrNotFound) {
				t.Errorf("OpenBlob after Delete = %v, want ErrNotFound", err)
			}
			if n := countChunks(t, s); n != 0 {
				t.Errorf("%d chunks left after Delete", n)
			}
		})
	}
}

func TestScanDesc(t *testing.T) {
	ctx := context.Background()
	s := newMemStore(t, 0)
	for _, k := range []string{"mod/b", "mod/a", "info/a", "mod/c/d", "modx", "mod/\xff\xff", "n"} {
		if err := s.Put(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		prefix, end string
		want        []string
	}{
		{"mod/", "", []string{"mod/\xff\xff", "mod/c/d", "mod/b", "mod/a"}},
		{"mod/", "mod/c/d", []string{"mod/b", "mod/a"}},
		{"mod/", "mod/bb", []string{"mod/b", "mod/a"}},
		{"mod", "", []string{"modx", "mod/\xff\xff", "mod/c/d", "mod/b", "mod/a"}},
		{"", "mod/b", []string{"mod/a", "info/a"}},
		{"zip/", "", nil},
		{"mod/", "mod/a", nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q before %q", tt.prefix, tt.end), func(t *testing.T) {
			var got []string
			err := s.ScanDesc(ctx, tt.prefix, tt.end, func(key string, e Entry) error {
				if string(e.Value) != "value of "+key {
					t.Errorf("entry of %q = %q", key, e.Value)
				}
				got = append(got, key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("ScanDesc keys = %q, want %q", got, tt.want)
			}
		})
	}
}
