package cache

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestSavedStats checks that Open takes the counts saved by Close only
// when nothing was written after them, and scans otherwise.
func TestSavedStats(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		after     func(t *testing.T, s *Store) // then the store is closed without saving
		wantSaved bool
	}{
		{"closed cleanly", nil, true},
		{"written after the save (a crash)", func(t *testing.T, s *Store) {
			if err := s.Put(ctx, "mod/late", []byte("late")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"an undecodable record", func(t *testing.T, s *Store) {
			if err := s.db.Update(func(txn *badger.Txn) error {
				return txn.Set([]byte(markerStats), []byte("{"))
			}); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"totals that are not the sums", func(t *testing.T, s *Store) {
			if err := s.db.Update(func(txn *badger.Txn) error {
				return txn.Set([]byte(markerStats), []byte(`{"Kinds":{"mod":{"Objects":1,"Bytes":5}},"TotalObjects":9}`))
			}); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(ctx, Config{Dir: dir, GCInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			for i, k := range []string{"mod/a", "info/b", "sumdb/c"} {
				if err := s.Put(ctx, k, pattern(10*(i+1), 1)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.PutBlob(ctx, "zip/d", bytes.NewReader(pattern(5000, 2)), 5000); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.after != nil { // reopen, write, and close Badger only: no new save
				s, err = Open(ctx, Config{Dir: dir, GCInterval: -1})
				if err != nil {
					t.Fatal(err)
				}
				tt.after(t, s)
				s.cancel()
				s.done.Wait()
				if err := s.db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			s, err = Open(ctx, Config{Dir: dir, GCInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.statsSaved != tt.wantSaved {
				t.Errorf("Open took the saved counts: %v, want %v", s.statsSaved, tt.wantSaved)
			}
			got, _ := s.Stats(ctx)
			want, err := s.scanStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Stats after Open = %+v, want what a scan counts: %+v", got, want)
			}
		})
	}
}
