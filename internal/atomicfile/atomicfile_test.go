package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWriteAndCreate(t *testing.T) {
	tests := []struct {
		name     string
		existing string // content of a file already at the path; "" for none
		write    func(path string) error
		wantErr  error
		want     string
		wantMode fs.FileMode
	}{
		{"write new", "", func(p string) error { return Write(p, []byte("new"), 0o600) }, nil, "new", 0o600},
		{"write replaces", "old", func(p string) error { return Write(p, []byte("new"), 0o644) }, nil, "new", 0o644},
		{"create new", "", func(p string) error { return Create(p, []byte("new"), 0o600) }, nil, "new", 0o600},
		{"create keeps", "old", func(p string) error { return Create(p, []byte("new"), 0o600) }, fs.ErrExist, "old", 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			err := tt.write(path)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != tt.want {
				t.Fatalf("content = %q, %v; want %q", b, err, tt.want)
			}
			if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != tt.wantMode {
				t.Errorf("mode = %04o, want %04o", fi.Mode().Perm(), tt.wantMode)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only the file (no temporary left)", len(entries))
			}
		})
	}
}

func TestWriteMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "f")
	if err := Write(path, []byte("x"), 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
	if err := Create(path, []byte("x"), 0o600); err == nil {
		t.Fatal("Create into a missing directory succeeded")
	}
}
