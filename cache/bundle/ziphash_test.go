package bundle

import (
	"archive/zip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHashZipRefusesDeclaredBomb checks that a zip whose files declare
// more than the limit is refused before any of it is decompressed.
func TestHashZipRefusesDeclaredBomb(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bomb.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "m@v1.0.0/big", Method: zip.Store,
		CompressedSize64: 1, UncompressedSize64: 600 << 20})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte{0})
	zw.Close()
	f.Close()
	if _, err := hashZip(path, DefaultMaxFile); err == nil || !strings.Contains(err.Error(), "declare more than") {
		t.Errorf("err = %v, want a refusal of the declared size", err)
	}
}
