package bundle

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/fakeupstream"
)

// fixture is a fake upstream and a key that signs bundles of it.
type fixture struct {
	t      *testing.T
	up     *fakeupstream.Server
	signer note.Signer
	vkey   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "sum.golang.org")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, up: fakeupstream.Start(t, fakeupstream.Options{}), signer: s, vkey: vkey}
}

func (f *fixture) get(path string) []byte {
	f.t.Helper()
	resp, err := http.Get(f.up.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		f.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return b
}

// options are what a fixture bundle is made of.
type options struct {
	mods   []module.Version
	since  int64
	c      Compression
	signer note.Signer
	edit   func(files map[string][]byte) // changes the tree before it is written
}

// write builds a bundle as an exporting gate would, reading everything
// from the upstream, and returns its bytes.
func (f *fixture) write(o options) []byte {
	f.t.Helper()
	db := f.up.Name()
	files := map[string][]byte{SupportedFile(db): {}}
	var note []byte
	var tree tlog.Tree
	var m Manifest
	lists := map[string][]string{}
	for _, mv := range o.mods {
		p, _ := module.EscapePath(mv.Path)
		v, _ := module.EscapeVersion(mv.Version)
		lookup := f.get("/sumdb/" + db + "/lookup/" + p + "@" + v)
		id, text, msg, err := tlog.ParseRecord(lookup)
		if err != nil {
			f.t.Fatal(err)
		}
		if note == nil {
			note = msg
			tree = f.treeOf(msg)
		}
		rec, _ := tlog.FormatRecord(id, text)
		files[LookupFile(db, p, v)] = append(rec, note...)
		for _, ext := range []string{".info", ".mod", ".zip"} {
			files[ModuleFile(p, v, ext)] = f.get("/" + p + "/@v/" + v + ext)
		}
		lists[p] = append(lists[p], mv.Version)
		m.Modules = append(m.Modules, Module{Path: mv.Path, Version: mv.Version, Zip: true, Record: id,
			FirstSeen: &Seen{Size: id + 1, Time: time.Unix(1700000000+id, 0).UTC()}})
	}
	for p, vs := range lists {
		files[ListFile(p)] = []byte(strings.Join(vs, "\n") + "\n")
	}
	ids := make([]int64, len(m.Modules))
	for i, mod := range m.Modules {
		ids[i] = mod.Record
	}
	tiles, sinceHash, err := ProofTiles(tree, ids, o.since, func(t tlog.Tile) ([]byte, error) {
		return f.get("/sumdb/" + db + "/" + t.Path()), nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, t := range tiles {
		files["sumdb/"+db+"/"+t.Path()] = f.get("/sumdb/" + db + "/" + t.Path())
	}
	if o.since > 0 {
		m.Since = &Tree{Size: o.since, Hash: sinceHash.String()}
	}
	if o.edit != nil {
		o.edit(files)
	}
	signer := cmpOr(o.signer, f.signer)
	m.Created = time.Unix(1700000000, 0).UTC()
	m.SumDB = SumDB{Name: db, Key: f.up.VerifierKey()}
	m.Signer = f.vkey
	m.Tree = Tree{Size: tree.N, Hash: tree.Hash.String()}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, o.c)
	if err != nil {
		f.t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := w.Add(n, int64(len(files[n])), bytes.NewReader(files[n])); err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := w.Finish(m, signer); err != nil {
		f.t.Fatal(err)
	}
	return buf.Bytes()
}

func cmpOr(a, b note.Signer) note.Signer {
	if a != nil {
		return a
	}
	return b
}

func (f *fixture) treeOf(msg []byte) tlog.Tree {
	f.t.Helper()
	v, err := note.NewVerifier(f.up.VerifierKey())
	if err != nil {
		f.t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		f.t.Fatal(err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		f.t.Fatal(err)
	}
	return tree
}

// verify extracts and verifies a bundle with the fixture's keys.
func (f *fixture) verify(b []byte, lim Limits) (*Verified, error) {
	dir := f.t.TempDir()
	ex, err := Extract(context.Background(), bytes.NewReader(b), dir, lim)
	if err != nil {
		return nil, err
	}
	return Verify(context.Background(), ex, VerifyOptions{Upstream: f.up.VerifierKey(), Trust: []string{f.vkey}})
}

// extractTo writes a bundle's tree into dir with Extract.
func extractTo(t *testing.T, b []byte, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(context.Background(), bytes.NewReader(b), dir, Limits{}); err != nil {
		t.Fatal(err)
	}
}
