// Package fakeupstream is an in-process fake of proxy.golang.org and
// sum.golang.org for tests: a Go module proxy (the GOPROXY protocol) and a
// checksum database served at /sumdb/<name>/, both built from the txtar
// test modules in testdata/modules.
//
// The checksum database is a real one (golang.org/x/mod/sumdb.Server over
// sumdb.TestServer) signed with a note key generated per Server, so
// sumdb.Client and the go command verify it against VerifierKey. The
// go.sum lines it serves are what the go command computes from the served
// bytes (dirhash.HashZip and dirhash.Hash1 over "go.mod").
//
// Faults can be switched on and off while the server runs: mismatched
// zips and go.mod files, .info files that name another version, injected
// HTTP status codes, a forked checksum database, and arbitrary handlers.
//
// Use Start in tests. Tools without a testing.TB use New, serve the Server
// (it is an http.Handler) on a listener of their own, and set URL.
//
// The folder lives under internal/ because the fake is shared by the
// tests of several packages and by end-to-end tests, and belongs to none
// of them.
package fakeupstream

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
)

// DefaultName is the default name of the checksum database.
const DefaultName = "sum.golang.org"

// repoModule is the module path of the repository holding testdata/modules.
const repoModule = "github.com/modgate/modgate"

// Options configures a Server. The zero value means the defaults.
type Options struct {
	// Dir is the directory of the txtar test modules. The default is the
	// repository's testdata/modules, found from this source file or by
	// walking up from the working directory to the repository's go.mod.
	Dir string

	// Name is the name of the checksum database and of its note key.
	// The default is DefaultName ("sum.golang.org").
	Name string

	// Now returns the time that replaces a .info Time of NowPlaceholder.
	// The default is time.Now.
	Now func() time.Time

	// Lazy makes records enter the checksum database when they are first
	// looked up, as on sum.golang.org; record ids then follow the order of
	// lookups. By default every module version is added when the Server is
	// built, sorted by path and then by semver, so record ids are stable,
	// and a version added later by AddArchive is appended at once.
	Lazy bool
}

// Server is a fake module proxy and checksum database. It implements
// http.Handler. All its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL the Server is reachable at, without a trailing
	// slash. Start sets it; users of New set it before calling SumDBURL.
	URL string

	name        string
	signerKey   string
	verifierKey string
	lazy        bool
	now         func() time.Time
	tree        *tree
	sumdb       *sumdb.Server

	mu       sync.Mutex
	mods     map[string]map[string]*modVersion // path → version → module
	counts   map[string]int                    // URL path → requests
	log      []string                          // URL paths in order of arrival
	zipBad   map[module.Version]bool
	modBad   map[module.Version]bool
	infoVer  map[module.Version]string
	status   map[string]int              // path prefix → status code
	handlers map[string]http.HandlerFunc // path prefix → handler
	tamper   tampering                   // checksum-database faults; see tamper.go
}

var _ http.Handler = (*Server)(nil)

// Start builds a Server with New, serves it with httptest.NewServer and
// registers the shutdown with tb.Cleanup. It fails tb if New fails.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := New(opts)
	if err != nil {
		tb.Fatalf("fakeupstream: %v", err)
	}
	ts := httptest.NewServer(s)
	s.URL = ts.URL
	tb.Cleanup(ts.Close)
	return s
}

// New loads the test modules, generates the checksum database key and
// builds the checksum database. The Server is not listening anywhere: the
// caller serves it and sets URL.
func New(opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, opts.Name)
	if err != nil {
		return nil, fmt.Errorf("generate checksum database key: %w", err)
	}
	mvs, err := loadDir(opts.Dir, opts.Now())
	if err != nil {
		return nil, err
	}
	s := &Server{
		name: opts.Name, signerKey: skey, verifierKey: vkey,
		lazy: opts.Lazy, now: opts.Now,
		mods:     make(map[string]map[string]*modVersion),
		counts:   make(map[string]int),
		zipBad:   make(map[module.Version]bool),
		modBad:   make(map[module.Version]bool),
		infoVer:  make(map[module.Version]string),
		status:   make(map[string]int),
		handlers: make(map[string]http.HandlerFunc),
	}
	s.tree = newTree(skey, s.gosum)
	s.sumdb = sumdb.NewServer(s.tree)
	for _, mv := range mvs {
		if err := s.add(mv); err != nil {
			return nil, err
		}
	}
	if !s.lazy {
		for _, m := range s.Modules() {
			if _, err := s.tree.Lookup(context.Background(), m); err != nil {
				return nil, fmt.Errorf("add %s to the checksum database: %w", m, err)
			}
		}
	}
	return s, nil
}

// withDefaults returns opts with its zero fields set to the defaults.
func (opts Options) withDefaults() (Options, error) {
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Dir == "" {
		dir, err := defaultDir()
		if err != nil {
			return opts, err
		}
		opts.Dir = dir
	}
	return opts, nil
}

// defaultDir finds the repository's testdata/modules.
func defaultDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "modules")
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find testdata/modules: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && modfile.ModulePath(data) == repoModule {
			return filepath.Join(d, "testdata", "modules"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("find testdata/modules: no go.mod of %s above %s: %w", repoModule, wd, os.ErrNotExist)
		}
	}
}

// add stores mv; it fails if that version is loaded already.
func (s *Server) add(mv *modVersion) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vers := s.mods[mv.mod.Path]
	if vers == nil {
		vers = make(map[string]*modVersion)
		s.mods[mv.mod.Path] = vers
	}
	if vers[mv.mod.Version] != nil {
		return fmt.Errorf("test module %s loaded twice", mv.mod)
	}
	vers[mv.mod.Version] = mv
	return nil
}

// AddArchive adds a module version from a txtar archive named as the files
// in testdata/modules are (for example "example.com_lib_v1.3.0.txt"), so
// tests can publish a version while the server runs. Unless Options.Lazy
// is set, its record is appended to the checksum database at once.
func (s *Server) AddArchive(name string, data []byte) (module.Version, error) {
	mv, err := parseArchive(name, data, s.now())
	if err != nil {
		return module.Version{}, err
	}
	if err := s.add(mv); err != nil {
		return module.Version{}, err
	}
	if !s.lazy {
		if _, err := s.tree.Lookup(context.Background(), mv.mod); err != nil {
			return module.Version{}, fmt.Errorf("add %s to the checksum database: %w", mv.mod, err)
		}
	}
	return mv.mod, nil
}

// lookup returns the module version m, or nil.
func (s *Server) lookup(m module.Version) *modVersion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mods[m.Path][m.Version]
}

// versions returns the versions of the module path sorted by semver.
func (s *Server) versions(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var list []string
	for v := range s.mods[path] {
		list = append(list, v)
	}
	semver.Sort(list)
	return list
}

// gosum returns the checksum database record of a module version. For an
// unknown one its error satisfies os.IsNotExist, so sumdb.Server answers
// 404.
func (s *Server) gosum(path, vers string) ([]byte, error) {
	m := module.Version{Path: path, Version: vers}
	mv := s.lookup(m)
	if mv == nil {
		return nil, &os.PathError{Op: "lookup", Path: m.String(), Err: os.ErrNotExist}
	}
	return mv.goSum(), nil
}

// Name returns the name of the checksum database.
func (s *Server) Name() string { return s.name }

// VerifierKey returns the checksum database's verifier key
// (name+hash+key), as GOSUMDB and sumdb.ClientOps.ReadConfig("key") take it.
func (s *Server) VerifierKey() string { return s.verifierKey }

// SignerKey returns the checksum database's private note key, for tests
// that forge signed notes.
func (s *Server) SignerKey() string { return s.signerKey }

// SumDBURL returns the base URL of the checksum database: URL + "/sumdb/"
// + name.
func (s *Server) SumDBURL() string { return s.URL + "/sumdb/" + s.name }

// TreeSize returns the number of records in the current checksum database
// tree (including the forged record of a fork).
func (s *Server) TreeSize() int64 { return s.tree.size() }

// Modules returns every loaded module version, sorted by path and then by
// semver. Paths and versions are unescaped.
func (s *Server) Modules() []module.Version {
	s.mu.Lock()
	var list []module.Version
	for p, vers := range s.mods {
		for v := range vers {
			list = append(list, module.Version{Path: p, Version: v})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b module.Version) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), semver.Compare(a.Version, b.Version))
	})
	return list
}

// GoSum returns the go.sum hashes of m ("h1:..."), for the zip and for the
// go.mod file, as the checksum database records them. Both are empty if
// m is unknown. Faults do not change them.
func (s *Server) GoSum(m module.Version) (zipH1, modH1 string) {
	mv := s.lookup(m)
	if mv == nil {
		return "", ""
	}
	return mv.zipH1, mv.modH1
}

// Fork switches the checksum database to a second tree signed with the
// same key that is not an extension of the first: its first record is a
// forged module line and the real records follow in the same order. From
// then on /latest, lookups and tiles come from the forked tree, so a
// client that cached a tree head before reports a security error. Every
// call forks again from a new forged record.
func (s *Server) Fork() {
	if err := s.tree.fork(context.Background()); err != nil {
		// Records come from memory, so this cannot happen.
		panic(fmt.Sprintf("fakeupstream: %v", err))
	}
}
