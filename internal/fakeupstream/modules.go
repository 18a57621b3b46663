package fakeupstream

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
	"golang.org/x/tools/txtar"
)

// DefaultInfoTime is the Time of a generated .info file, used when an
// archive has no "-- .info --" section.
const DefaultInfoTime = "2024-01-01T00:00:00Z"

// NowPlaceholder is the .info Time value that is replaced by the current
// time (Options.Now) when the archive is loaded.
const NowPlaceholder = "NOW"

// mismatchFile is the extra file of the zip served under SetZipMismatch.
const mismatchFile = "fakeupstream_mismatch.txt"

// mismatchComment is appended to the go.mod served under SetModMismatch.
const mismatchComment = "\n// fakeupstream: this go.mod differs from the checksum database\n"

// modVersion is one loaded module version with everything it serves.
// It is immutable once built.
type modVersion struct {
	mod    module.Version
	info   []byte // the .info JSON as served
	goMod  []byte // the .mod file as served
	zip    []byte // the module zip
	altMod []byte // a different go.mod, for SetModMismatch
	altZip []byte // a different valid zip, for SetZipMismatch
	modH1  string // dirhash.Hash1 of goMod as a file named go.mod
	zipH1  string // dirhash.HashZip of zip
}

// goSum returns the go.sum lines of m, which are also its checksum
// database record.
func (mv *modVersion) goSum() []byte {
	return fmt.Appendf(nil, "%s %s %s\n%s %s/go.mod %s\n",
		mv.mod.Path, mv.mod.Version, mv.zipH1,
		mv.mod.Path, mv.mod.Version, mv.modH1)
}

// loadDir loads every *.txt archive in dir.
func loadDir(dir string, now time.Time) ([]*modVersion, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, fmt.Errorf("list test modules: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no test modules (*.txt) in %s: %w", dir, fs.ErrNotExist)
	}
	mvs := make([]*modVersion, 0, len(names))
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read test module: %w", err)
		}
		mv, err := parseArchive(filepath.Base(name), data, now)
		if err != nil {
			return nil, err
		}
		mvs = append(mvs, mv)
	}
	return mvs, nil
}

// versionFromName parses an archive name such as
// "example.com_!upper_v1.0.0.txt": the escaped module path with "/"
// replaced by "_", then "_" and the escaped version (as in cmd/go's
// testdata/mod).
func versionFromName(name string) (module.Version, error) {
	base := strings.TrimSuffix(name, ".txt")
	i := strings.LastIndex(base, "_v")
	if i < 0 {
		return module.Version{}, fmt.Errorf("test module %s: name is not <path>_<version>.txt", name)
	}
	p, err := module.UnescapePath(strings.ReplaceAll(base[:i], "_", "/"))
	if err != nil {
		return module.Version{}, fmt.Errorf("test module %s: %w", name, err)
	}
	v, err := module.UnescapeVersion(base[i+1:])
	if err != nil {
		return module.Version{}, fmt.Errorf("test module %s: %w", name, err)
	}
	if err := module.Check(p, v); err != nil {
		return module.Version{}, fmt.Errorf("test module %s: %w", name, err)
	}
	if module.CanonicalVersion(v) != v {
		return module.Version{}, fmt.Errorf("test module %s: version %s is not canonical", name, v)
	}
	return module.Version{Path: p, Version: v}, nil
}

// parseArchive builds a module version from a txtar archive named as
// versionFromName describes. Sections: ".mod" (the go.mod served; default
// the module's go.mod file), ".info" (default generated), and the files of
// the module zip.
func parseArchive(name string, data []byte, now time.Time) (*modVersion, error) {
	m, err := versionFromName(name)
	if err != nil {
		return nil, err
	}
	ar := txtar.Parse(data)
	mv := &modVersion{mod: m}
	var files []modzip.File
	for _, f := range ar.Files {
		switch f.Name {
		case ".mod":
			mv.goMod = f.Data
		case ".info":
			mv.info = f.Data
		default:
			files = append(files, memFile{name: f.Name, data: f.Data})
		}
	}
	if err := mv.fill(files, now); err != nil {
		return nil, fmt.Errorf("test module %s: %w", name, err)
	}
	return mv, nil
}

// fill completes mv from its zip files: defaults for .mod and .info, the
// zips, the alternative files for faults, and the hashes.
func (mv *modVersion) fill(files []modzip.File, now time.Time) error {
	if mv.goMod == nil {
		mv.goMod = defaultGoMod(mv.mod.Path, files)
	}
	if got := modfile.ModulePath(mv.goMod); got != mv.mod.Path {
		return fmt.Errorf(".mod declares module %q, want %q", got, mv.mod.Path)
	}
	info, err := makeInfo(mv.mod.Version, mv.info, now)
	if err != nil {
		return err
	}
	mv.info = info
	if mv.zip, err = makeZip(mv.mod, files); err != nil {
		return err
	}
	extra := memFile{name: mismatchFile, data: []byte("not in the checksum database\n")}
	if mv.altZip, err = makeZip(mv.mod, append(files[:len(files):len(files)], extra)); err != nil {
		return err
	}
	mv.altMod = append(bytes.Clone(mv.goMod), mismatchComment...)
	if mv.modH1, err = hashMod(mv.goMod); err != nil {
		return err
	}
	mv.zipH1, err = hashZip(mv.zip)
	return err
}

// defaultGoMod returns the module's go.mod file, or a minimal one.
func defaultGoMod(modPath string, files []modzip.File) []byte {
	for _, f := range files {
		if mf, ok := f.(memFile); ok && mf.name == "go.mod" {
			return mf.data
		}
	}
	return fmt.Appendf(nil, "module %s\n", modPath)
}

// makeInfo returns the .info JSON for version: the given one with the
// NowPlaceholder time replaced, or a generated one.
func makeInfo(version string, data []byte, now time.Time) ([]byte, error) {
	if data == nil {
		return json.Marshal(map[string]string{"Version": version, "Time": DefaultInfoTime})
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf(".info: %w", err)
	}
	var info struct{ Version, Time string }
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf(".info: %w", err)
	}
	if info.Version != version {
		return nil, fmt.Errorf(".info: Version %q, want %q", info.Version, version)
	}
	if info.Time == NowPlaceholder {
		t, err := json.Marshal(now.UTC().Format(time.RFC3339))
		if err != nil {
			return nil, fmt.Errorf(".info: %w", err)
		}
		fields["Time"] = t
	} else if _, err := time.Parse(time.RFC3339, info.Time); err != nil {
		return nil, fmt.Errorf(".info: %w", err)
	}
	return json.Marshal(fields)
}

// makeZip builds a module zip of files with golang.org/x/mod/zip.
func makeZip(m module.Version, files []modzip.File) ([]byte, error) {
	var buf bytes.Buffer
	if err := modzip.Create(&buf, m, files); err != nil {
		return nil, fmt.Errorf("build zip: %w", err)
	}
	return buf.Bytes(), nil
}

// hashMod returns the go.sum hash of a go.mod file, as the go command
// computes it: dirhash.Hash1 over one file named "go.mod".
func hashMod(data []byte) (string, error) {
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return "", fmt.Errorf("hash go.mod: %w", err)
	}
	return h, nil
}

// hashZip returns the go.sum hash of a module zip. It is
// dirhash.HashZip(file, dirhash.Hash1) for a zip held in memory.
func hashZip(data []byte) (string, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", fmt.Errorf("hash zip: %w", err)
	}
	var names []string
	byName := make(map[string]*zip.File)
	for _, f := range zr.File {
		names = append(names, f.Name)
		byName[f.Name] = f
	}
	h, err := dirhash.Hash1(names, func(name string) (io.ReadCloser, error) {
		f := byName[name]
		if f == nil {
			return nil, fmt.Errorf("file %q not in zip: %w", name, fs.ErrNotExist)
		}
		return f.Open()
	})
	if err != nil {
		return "", fmt.Errorf("hash zip: %w", err)
	}
	return h, nil
}

// memFile is a module file held in memory; it implements modzip.File.
type memFile struct {
	name string
	data []byte
}

var _ modzip.File = memFile{}

// Path returns the slash-separated path of f in the module.
func (f memFile) Path() string { return f.name }

// Lstat returns the file information of f.
func (f memFile) Lstat() (fs.FileInfo, error) { return memFileInfo(f), nil }

// Open returns the contents of f.
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

// memFileInfo is the fs.FileInfo of a memFile.
type memFileInfo memFile

// Name returns the base name of the file.
func (fi memFileInfo) Name() string { return path.Base(fi.name) }

// Size returns the length of the file.
func (fi memFileInfo) Size() int64 { return int64(len(fi.data)) }

// Mode returns the mode of a regular file readable by all.
func (fi memFileInfo) Mode() fs.FileMode { return 0o644 }

// ModTime returns the zero time.
func (fi memFileInfo) ModTime() time.Time { return time.Time{} }

// IsDir returns false.
func (fi memFileInfo) IsDir() bool { return false }

// Sys returns nil.
func (fi memFileInfo) Sys() any { return nil }
