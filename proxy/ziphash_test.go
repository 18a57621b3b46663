package proxy

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

// zipEntry is one file written into a test zip.
type zipEntry struct {
	name   string
	data   string
	method uint16
}

// makeTestZip returns a zip of entries; corrupt flips a byte of the first
// entry's stored data, so that reading it fails its CRC.
func makeTestZip(t testing.TB, entries []zipEntry, corrupt bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if corrupt {
		// The first entry's data follows its 30-byte local header and name.
		b[30+len(entries[0].name)] ^= 0xff
	}
	return b
}

// compareHashZip checks that hashZip and dirhash.HashZip agree on the zip
// in data: the same hash, or both an error with the same text.
func compareHashZip(t *testing.T, data []byte) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want, werr := dirhash.HashZip(name, dirhash.Hash1)
	got, gerr := hashZip(name)
	if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("hashZip = %q, %v; dirhash.HashZip = %q, %v", got, gerr, want, werr)
	}
}

func TestHashZipMatchesDirhash(t *testing.T) {
	many := make([]zipEntry, 50)
	for i := range many {
		many[i] = zipEntry{fmt.Sprintf("m@v1.0.0/f%02d.go", 49-i), fmt.Sprint("package m // ", i), zip.Deflate}
	}
	tests := []struct {
		name    string
		entries []zipEntry
		corrupt bool
	}{
		{"empty", nil, false},
		{"one file", []zipEntry{{"m@v1.0.0/go.mod", "module m\n", zip.Deflate}}, false},
		{"stored and deflated", []zipEntry{{"m@v1.0.0/a", "a", zip.Store}, {"m@v1.0.0/b", "b", zip.Deflate}}, false},
		{"many files out of order", many, false},
		{"duplicate names", []zipEntry{{"m@v1.0.0/a", "first", zip.Deflate}, {"m@v1.0.0/b", "b", zip.Deflate},
			{"m@v1.0.0/a", "second", zip.Deflate}}, false},
		{"newline in a name", []zipEntry{{"m@v1.0.0/a", "a", zip.Deflate}, {"m@v1.0.0/b\nc", "b", zip.Deflate}}, false},
		{"newline after a broken file", []zipEntry{{"m@v1.0.0/a", "aaaa", zip.Store},
			{"m@v1.0.0/b\nc", "b", zip.Deflate}}, true},
		{"broken file", []zipEntry{{"m@v1.0.0/a", "aaaa", zip.Store}, {"m@v1.0.0/b", "b", zip.Deflate}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			compareHashZip(t, makeTestZip(t, tt.entries, tt.corrupt))
		})
	}
	t.Run("not a zip", func(t *testing.T) { compareHashZip(t, []byte("not a zip")) })
}

// FuzzHashZip compares hashZip with dirhash.HashZip on arbitrary bytes,
// seeded with valid and broken zips.
func FuzzHashZip(f *testing.F) {
	f.Add(makeTestZip(f, []zipEntry{{"m@v1.0.0/go.mod", "module m\n", zip.Deflate}}, false))
	f.Add(makeTestZip(f, []zipEntry{{"m@v1.0.0/a", "x", zip.Store}, {"m@v1.0.0/a", "y", zip.Deflate}}, false))
	f.Add(makeTestZip(f, []zipEntry{{"m@v1.0.0/a", "aaaa", zip.Store}, {"m@v1.0.0/b", "b", zip.Deflate}}, true))
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Fuzz(func(t *testing.T, data []byte) {
		compareHashZip(t, data)
	})
}
