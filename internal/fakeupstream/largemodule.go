package fakeupstream

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// AddLargeModule publishes m with a module zip of about size bytes,
// generated into a file in dir (never held in memory): a go.mod and one
// file of pseudo-random bytes, stored uncompressed. Its go.sum lines are
// added to the checksum database (at once unless Options.Lazy), and the
// zip is served from the file. It returns the zip's path.
func (s *Server) AddLargeModule(m module.Version, size int64, dir string) (string, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return "", err
	}
	goMod := fmt.Appendf(nil, "module %s\n", m.Path)
	file := filepath.Join(dir, fmt.Sprintf("large-%d.zip", time.Now().UnixNano()))
	if err := writeLargeZip(file, m, goMod, size); err != nil {
		return "", err
	}
	zipH1, err := dirhash.HashZip(file, dirhash.Hash1)
	if err != nil {
		return "", fmt.Errorf("hash large zip: %w", err)
	}
	modH1, err := hashMod(goMod)
	if err != nil {
		return "", err
	}
	info, err := makeInfo(m.Version, nil, s.now())
	if err != nil {
		return "", err
	}
	mv := &modVersion{mod: m, info: info, goMod: goMod, altMod: goMod, modH1: modH1, zipH1: zipH1}
	if err := s.add(mv); err != nil {
		return "", err
	}
	s.Handle(ZipPath(m), func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			writeText(w, http.StatusInternalServerError, err.Error())
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/zip")
		http.ServeContent(w, r, "", time.Time{}, f)
	})
	if !s.lazy {
		if _, err := s.tree.Lookup(context.Background(), m); err != nil {
			return "", fmt.Errorf("add %s to the checksum database: %w", m, err)
		}
	}
	return file, nil
}

// WriteOtherLargeZip writes to file a valid module zip of m as
// AddLargeModule makes it, of the same size but other data: a zip whose
// hash differs from the checksum database's record of m, for tests of
// what happens when an upstream serves it.
func WriteOtherLargeZip(file string, m module.Version, size int64) error {
	return writeLargeZipSeed(file, m, fmt.Appendf(nil, "module %s\n", m.Path), size, [32]byte{'o', 't', 'h', 'e', 'r'})
}

// writeLargeZip writes a module zip of m with goMod and size bytes of
// pseudo-random data in "data.bin", both stored uncompressed.
func writeLargeZip(file string, m module.Version, goMod []byte, size int64) error {
	return writeLargeZipSeed(file, m, goMod, size, [32]byte{'m', 'o', 'd', 'g', 'a', 't', 'e'})
}

// writeLargeZipSeed is writeLargeZip with the seed of the data.
func writeLargeZipSeed(file string, m module.Version, goMod []byte, size int64, seed [32]byte) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("large zip: %w", err)
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	prefix := m.Path + "@" + m.Version + "/"
	w, err := zw.CreateHeader(&zip.FileHeader{Name: prefix + "go.mod", Method: zip.Store})
	if err == nil {
		_, err = w.Write(goMod)
	}
	if err == nil {
		w, err = zw.CreateHeader(&zip.FileHeader{Name: prefix + "data.bin", Method: zip.Store})
	}
	if err == nil {
		_, err = io.CopyN(w, rand.NewChaCha8(seed), size)
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		return fmt.Errorf("large zip: %w", err)
	}
	return nil
}

// AddFillers publishes n small module versions (fill.example/mNNNNN
// v1.0.0, numbered from the current tree size) and appends their records
// to the checksum database, so that tests can grow the tree past a tile
// boundary (256 records). It returns the versions added.
func (s *Server) AddFillers(n int) ([]module.Version, error) {
	var added []module.Version
	base := s.TreeSize()
	for i := range n {
		p := fmt.Sprintf("fill.example/m%05d", base+int64(i))
		data := fmt.Appendf(nil, "-- go.mod --\nmodule %s\n-- fill.go --\npackage fill\n", p)
		m, err := s.AddArchive(strings.ReplaceAll(p, "/", "_")+"_v1.0.0.txt", data)
		if err != nil {
			return added, err
		}
		added = append(added, m)
	}
	return added, nil
}
