package modfixture

import (
	"archive/zip"
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// LoadSums computes the go.sum hashes of every module version in the tree
// at dir. With sumsFile not empty, hashes of files whose sizes have not
// changed are read from it, and the result is written back.
func LoadSums(dir, sumsFile string) (map[module.Version]Sums, error) {
	mods, err := findMods(dir)
	if err != nil {
		return nil, err
	}
	cached := readSumsFile(sumsFile)
	out := make(map[module.Version]Sums, len(mods))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		sem  = make(chan struct{}, runtime.GOMAXPROCS(0))
	)
	for m, base := range mods {
		stamp := sizeStamp(base)
		if c, ok := cached[m.Path+" "+m.Version+" "+stamp]; ok {
			out[m] = c
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			h, err := hashVersion(base)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m, err))
				return
			}
			out[m] = h
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("modfixture: hashing: %v", errs[0])
	}
	if sumsFile != "" {
		if err := writeSumsFile(sumsFile, mods, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// findMods maps each module version with a .mod file in the tree to the
// path of its files without extension.
func findMods(dir string) (map[module.Version]string, error) {
	mods := make(map[module.Version]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && rel == "sumdb" {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".mod") {
			return nil
		}
		escPath, file, ok := strings.Cut(filepath.ToSlash(rel), "/@v/")
		if !ok {
			return nil
		}
		mp, err1 := module.UnescapePath(escPath)
		v, err2 := module.UnescapeVersion(strings.TrimSuffix(file, ".mod"))
		if err1 != nil || err2 != nil {
			return nil
		}
		mods[module.Version{Path: mp, Version: v}] = strings.TrimSuffix(p, ".mod")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("modfixture: reading %s: %w", dir, err)
	}
	return mods, nil
}

// sizeStamp identifies the content of a version's files by their sizes.
func sizeStamp(base string) string {
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	return fmt.Sprintf("%d/%d", size(base+".mod"), size(base+".zip"))
}

// hashVersion computes the go.sum hashes of the files at base.
func hashVersion(base string) (Sums, error) {
	var h Sums
	var err error
	h.Mod, err = dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) { return os.Open(base + ".mod") })
	if err != nil {
		return h, err
	}
	if _, serr := os.Stat(base + ".zip"); serr == nil {
		h.Zip, err = dirhash.HashZip(base+".zip", dirhash.Hash1)
	}
	return h, err
}

func readSumsFile(name string) map[string]Sums {
	out := make(map[string]Sums)
	f, err := os.Open(name)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// path version stamp zipH1 modH1 (zipH1 "-" when no zip)
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 {
			continue
		}
		h := Sums{Zip: fs[3], Mod: fs[4]}
		if h.Zip == "-" {
			h.Zip = ""
		}
		out[fs[0]+" "+fs[1]+" "+fs[2]] = h
	}
	return out
}

func writeSumsFile(name string, mods map[module.Version]string, sums map[module.Version]Sums) error {
	var b strings.Builder
	for m, base := range mods {
		h := sums[m]
		z := h.Zip
		if z == "" {
			z = "-"
		}
		fmt.Fprintf(&b, "%s %s %s %s %s\n", m.Path, m.Version, sizeStamp(base), z, h.Mod)
	}
	if err := os.WriteFile(name, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("modfixture: %w", err)
	}
	return nil
}

// WriteSynthetic writes a module version of about size bytes of
// incompressible content (stored, not deflated) into the tree at dir:
// its .info, .mod and .zip. It does nothing if the zip is already there.
func WriteSynthetic(dir, modPath, version string, size int64) error {
	escPath, err := module.EscapePath(modPath)
	if err != nil {
		return err
	}
	base := filepath.Join(dir, filepath.FromSlash(escPath), "@v", version)
	if _, err := os.Stat(base + ".zip"); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		return err
	}
	goMod := "module " + modPath + "\n\ngo 1.22\n"
	info := fmt.Sprintf(`{"Version":%q,"Time":"2026-01-01T00:00:00Z"}`, version)
	if err := os.WriteFile(base+".mod", []byte(goMod), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(base+".info", []byte(info), 0o644); err != nil {
		return err
	}
	tmp := base + ".zip.tmp"
	if err := writeSyntheticZip(tmp, modPath+"@"+version, goMod, size); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, base+".zip")
}

// writeSyntheticZip writes go.mod and 32 MiB files of pseudo-random bytes
// up to size.
func writeSyntheticZip(name, prefix, goMod string, size int64) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: prefix + "/go.mod", Method: zip.Store})
	if err != nil {
		return err
	}
	io.WriteString(w, goMod)
	rng := rand.NewChaCha8([32]byte{'m', 'o', 'd', 'g', 'a', 't', 'e'})
	const part = 32 << 20
	for i := 0; int64(i)*part < size; i++ {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("%s/data/part%03d.bin", prefix, i), Method: zip.Store})
		if err != nil {
			return err
		}
		if _, err := io.CopyN(w, rng, min(part, size-int64(i)*part)); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
