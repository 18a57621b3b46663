package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestRead(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes")
	}
	tests := []struct {
		mode    os.FileMode
		wantErr error
	}{
		{0o600, nil},
		{0o400, nil},
		{0o640, ErrInsecureKey},
		{0o604, ErrInsecureKey},
		{0o620, ErrInsecureKey},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			b, err := Read(path)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Read = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && string(b) != "s3cret\n" {
				t.Errorf("Read = %q", b)
			}
			if tt.wantErr != nil && b != nil {
				t.Errorf("Read returned content %q with its error", b)
			}
		})
	}
}
