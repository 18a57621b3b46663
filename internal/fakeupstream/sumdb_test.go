package fakeupstream

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memOps is an in-memory sumdb.ClientOps that fetches from a Server.
type memOps struct {
	t    *testing.T
	base string // SumDBURL
	key  string // verifier key

	mu       sync.Mutex
	config   map[string][]byte
	cache    map[string][]byte
	security []string
}

var _ sumdb.ClientOps = (*memOps)(nil)

func newMemOps(t *testing.T, s *Server) *memOps {
	return &memOps{t: t, base: s.SumDBURL(), key: s.VerifierKey(),
		config: make(map[string][]byte), cache: make(map[string][]byte)}
}

func (o *memOps) ReadRemote(path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(o.t.Context(), http.MethodGet, o.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, data)
	}
	return data, nil
}

func (o *memOps) ReadConfig(file string) ([]byte, error) {
	if file == "key" {
		return []byte(o.key), nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.config[file], nil
}

func (o *memOps) WriteConfig(file string, old, new []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !bytes.Equal(o.config[file], old) {
		return sumdb.ErrWriteConflict
	}
	o.config[file] = new
	return nil
}

func (o *memOps) ReadCache(file string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if data, ok := o.cache[file]; ok {
		return data, nil
	}
	return nil, fmt.Errorf("%s not cached", file)
}

func (o *memOps) WriteCache(file string, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cache[file] = data
}

func (o *memOps) Log(msg string) { o.t.Log(msg) }

func (o *memOps) SecurityError(msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.security = append(o.security, msg)
}

func (o *memOps) securityErrors() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.security)
}

// lookupAll looks up mods with c and checks the lines against GoSum.
func lookupAll(t *testing.T, s *Server, c *sumdb.Client, mods []module.Version) {
	t.Helper()
	for _, m := range mods {
		zipH1, modH1 := s.GoSum(m)
		tests := []struct{ vers, want string }{
			{m.Version, m.Path + " " + m.Version + " " + zipH1},
			{m.Version + "/go.mod", m.Path + " " + m.Version + "/go.mod " + modH1},
		}
		for _, tt := range tests {
			lines, err := c.Lookup(m.Path, tt.vers)
			if err != nil {
				t.Errorf("Lookup(%s, %s): %v", m.Path, tt.vers, err)
				continue
			}
			if len(lines) != 1 || lines[0] != tt.want {
				t.Errorf("Lookup(%s, %s) = %q, want %q", m.Path, tt.vers, lines, tt.want)
			}
		}
	}
}

func TestSumDBClientVerifies(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"lazy", Options{Lazy: true}},
		{"other name", Options{Name: "sum.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, tt.opts)
			if name, _, _ := strings.Cut(s.VerifierKey(), "+"); name != s.Name() {
				t.Errorf("verifier key %q is not named %q", s.VerifierKey(), s.Name())
			}
			ops := newMemOps(t, s)
			c := sumdb.NewClient(ops)
			lookupAll(t, s, c, s.Modules())
			if _, err := c.Lookup("example.com/nope", "v1.0.0"); err == nil || !strings.Contains(err.Error(), "404") {
				t.Errorf("Lookup of an unknown module: %v, want a 404 error", err)
			}
			if sec := ops.securityErrors(); len(sec) > 0 {
				t.Errorf("security errors: %q", sec)
			}
			if got, want := s.TreeSize(), int64(len(s.Modules())); got != want {
				t.Errorf("tree size %d, want %d", got, want)
			}
		})
	}
}

func TestSumDBRecordIDsAreStable(t *testing.T) {
	s := Start(t, Options{})
	for i, m := range s.Modules() {
		escPath, _ := module.EscapePath(m.Path)
		_, _, body := get(t, s.SumDBURL()+"/lookup/"+escPath+"@"+m.Version)
		id, _, _, err := tlog.ParseRecord(body)
		if err != nil || id != int64(i) {
			t.Errorf("%s: record id %d (%v), want %d (sorted order)", m, id, err, i)
		}
	}
}

func TestSumDBLazyGrows(t *testing.T) {
	s := Start(t, Options{Lazy: true})
	if s.TreeSize() != 0 {
		t.Fatalf("lazy tree starts with %d records", s.TreeSize())
	}
	mods := []module.Version{
		{Path: "example.com/lib", Version: "v1.2.0"},
		{Path: "example.com/dep", Version: "v1.0.0"},
		{Path: "example.com/lib", Version: "v1.2.0"},
	}
	wantIDs := []int64{0, 1, 0}
	for i, m := range mods {
		_, _, body := get(t, s.SumDBURL()+"/lookup/"+m.Path+"@"+m.Version)
		id, _, _, err := tlog.ParseRecord(body)
		if err != nil || id != wantIDs[i] {
			t.Errorf("lookup %s: id %d (%v), want %d", m, id, err, wantIDs[i])
		}
	}
	if s.TreeSize() != 2 {
		t.Errorf("tree size %d, want 2", s.TreeSize())
	}
}

func TestForkIsDetected(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"lazy", Options{Lazy: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, tt.opts)
			ops := newMemOps(t, s)
			c := sumdb.NewClient(ops)
			lookupAll(t, s, c, []module.Version{
				{Path: "example.com/lib", Version: "v1.2.0"},
				{Path: "example.com/Upper", Version: "v1.0.0"},
			})
			before := latestTree(t, s)
			s.Fork()
			after := latestTree(t, s)
			if after.N != before.N+1 || after.Hash == before.Hash {
				t.Errorf("forked tree %+v does not differ from %+v as expected", after, before)
			}
			_, err := c.Lookup("example.com/dep", "v1.0.0")
			if err == nil || !strings.Contains(err.Error(), sumdb.ErrSecurity.Error()) {
				t.Errorf("Lookup after Fork: %v, want %v", err, sumdb.ErrSecurity)
			}
			if len(ops.securityErrors()) == 0 {
				t.Error("SecurityError was not called after Fork")
			}

			// The forked tree is valid in itself: a new client accepts it.
			fresh := newMemOps(t, s)
			lookupAll(t, s, sumdb.NewClient(fresh), []module.Version{
				{Path: "example.com/dep", Version: "v1.0.0"},
				{Path: "example.com/lib", Version: "v1.2.0"},
			})
			if sec := fresh.securityErrors(); len(sec) > 0 {
				t.Errorf("a new client rejects the forked tree: %q", sec)
			}
		})
	}
}

func TestForkTwice(t *testing.T) {
	s := Start(t, Options{})
	ops := newMemOps(t, s)
	s.Fork()
	c := sumdb.NewClient(ops)
	lookupAll(t, s, c, []module.Version{{Path: "example.com/lib", Version: "v1.0.0"}})
	s.Fork()
	if _, err := c.Lookup("example.com/dep", "v1.0.0"); err == nil {
		t.Error("a second Fork was not detected")
	}
}

// latestTree returns the verified tree head the server serves at /latest.
func latestTree(t *testing.T, s *Server) tlog.Tree {
	t.Helper()
	_, _, msg := get(t, s.SumDBURL()+"/latest")
	v, err := note.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("open /latest: %v", err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	return tree
}
