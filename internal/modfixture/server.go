// Package modfixture serves a directory of real module files as a module
// proxy, with a checksum database computed over those very files.
//
// The directory has the layout of a module cache's download tree
// ($GOMODCACHE/cache/download, also a valid file:// GOPROXY):
// <escaped path>/@v/<escaped version>.{info,mod,zip}. The go.sum hashes of
// each version (dirhash.HashZip of the zip, dirhash.Hash1 of the go.mod)
// are computed once, cached in a file beside the tree, and entered into a
// sumdb.TestServer signed with a fresh test key, all at construction, so
// the tree does not grow while clients use it.
//
// It exists for the bench command (internal/bench), whose workload is
// hundreds of real modules and a synthetic 300 MiB one: unlike
// internal/fakeupstream, which builds small test modules from txtar files
// in memory, it streams files from disk and never holds a zip in memory.
package modfixture

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

// Name is the name of the checksum database (and of its key).
const Name = "sum.golang.org"

// Server is a module proxy over a download tree and a checksum database
// at /sumdb/sum.golang.org/. It counts requests by path. It is an
// http.Handler, safe for concurrent use.
type Server struct {
	dir         string
	verifierKey string
	sums        map[module.Version]Sums
	sumdb       *sumdb.Server
	treeSize    int64

	mu     sync.Mutex
	counts map[string]int
}

// Sums are the go.sum hashes of one module version; Zip is empty when the
// tree holds only its go.mod.
type Sums struct{ Zip, Mod string }

// New hashes the tree at dir (reading and writing the hash cache
// sumsFile, if not empty) and builds the checksum database over it.
func New(ctx context.Context, dir, sumsFile string) (*Server, error) {
	sums, err := LoadSums(dir, sumsFile)
	if err != nil {
		return nil, err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, Name)
	if err != nil {
		return nil, fmt.Errorf("modfixture: %w", err)
	}
	s := &Server{dir: dir, verifierKey: vkey, sums: sums, counts: make(map[string]int)}
	ts := sumdb.NewTestServer(skey, s.gosum)
	for _, m := range s.Modules() {
		if _, err := ts.Lookup(ctx, m); err != nil {
			return nil, fmt.Errorf("modfixture: adding %s to the checksum database: %w", m, err)
		}
	}
	s.treeSize = int64(len(sums))
	s.sumdb = sumdb.NewServer(ts)
	return s, nil
}

// VerifierKey is the checksum database's verifier key (for GOSUMDB or
// modgate's --upstream-sumdb).
func (s *Server) VerifierKey() string { return s.verifierKey }

// TreeSize is the number of records in the checksum database.
func (s *Server) TreeSize() int64 { return s.treeSize }

// Sums returns the hashes of m.
func (s *Server) Sums(m module.Version) (Sums, bool) {
	h, ok := s.sums[m]
	return h, ok
}

// Modules returns every module version in the tree, sorted.
func (s *Server) Modules() []module.Version {
	out := make([]module.Version, 0, len(s.sums))
	for m := range s.sums {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b module.Version) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return semver.Compare(a.Version, b.Version)
	})
	return out
}

// gosum returns the record of a module version for the checksum database.
func (s *Server) gosum(p, v string) ([]byte, error) {
	h, ok := s.sums[module.Version{Path: p, Version: v}]
	if !ok {
		return nil, &os.PathError{Op: "lookup", Path: p + "@" + v, Err: os.ErrNotExist}
	}
	var b strings.Builder
	if h.Zip != "" {
		fmt.Fprintf(&b, "%s %s %s\n", p, v, h.Zip)
	}
	fmt.Fprintf(&b, "%s %s/go.mod %s\n", p, v, h.Mod)
	return []byte(b.String()), nil
}

// Count returns how many requests asked for path so far.
func (s *Server) Count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// Total returns how many requests were served so far.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c
	}
	return n
}

// ServeHTTP serves the module proxy protocol from the tree (files with
// Content-Length, lists built from the versions present, no @latest) and
// the checksum database.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	s.mu.Lock()
	s.counts[p]++
	s.mu.Unlock()
	if rest, ok := strings.CutPrefix(p, "/sumdb/"+Name+"/"); ok {
		if rest == "supported" {
			w.WriteHeader(http.StatusOK)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = "/"+rest, ""
		s.sumdb.ServeHTTP(w, r2)
		return
	}
	if strings.HasSuffix(p, "/@v/list") {
		s.serveList(w, strings.TrimSuffix(p[1:], "/@v/list"))
		return
	}
	ext := path.Ext(p)
	if !strings.Contains(p, "/@v/") || (ext != ".info" && ext != ".mod" && ext != ".zip") ||
		strings.Contains(p, "..") || strings.Contains(p, "\\") {
		http.Error(w, "not found: "+p, http.StatusNotFound)
		return
	}
	f, err := os.Open(filepath.Join(s.dir, filepath.FromSlash(p[1:])))
	if err != nil {
		http.Error(w, "not found: "+p, http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().
		Set("Content-Type", map[string]string{".info": "application/json", ".mod": "text/plain; charset=utf-8", ".zip": "application/zip"}[ext])
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// serveList lists the versions of an escaped module path that have a .mod.
func (s *Server) serveList(w http.ResponseWriter, escPath string) {
	entries, err := os.ReadDir(filepath.Join(s.dir, filepath.FromSlash(escPath), "@v"))
	if err != nil {
		http.Error(w, "not found: "+escPath, http.StatusNotFound)
		return
	}
	var vs []string
	for _, e := range entries {
		if v, ok := strings.CutSuffix(e.Name(), ".mod"); ok {
			if uv, err := module.UnescapeVersion(v); err == nil {
				vs = append(vs, uv)
			}
		}
	}
	semver.Sort(vs)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, v := range vs {
		fmt.Fprintln(w, v)
	}
}
