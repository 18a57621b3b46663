package bundle

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions says what Verify trusts.
type VerifyOptions struct {
	// Upstream is the verifier key of the upstream checksum database; the
	// tree note must carry its signature. Required.
	Upstream string
	// Trust lists the verifier keys one of which must have signed the
	// manifest. Empty checks the signature against the manifest's own
	// Signer only (Verified.Trusted is then false).
	Trust []string
	// Workers hash zips in parallel; 0 means GOMAXPROCS.
	Workers int
}

// Verified is a bundle that passed every check of Verify.
type Verified struct {
	Manifest Manifest
	Trusted  bool      // the manifest is signed by a key of VerifyOptions.Trust
	Note     []byte    // the tree note every lookup carries (co-signed)
	Tree     tlog.Tree // the tree it signs
	Records  []Record  // in manifest order
}

// Record is a module's checksum-database record, proven in Verified.Tree.
type Record struct {
	Module module.Version
	ID     int64
	Text   []byte // its go.sum lines
	Lookup []byte // the lookup answer as carried: id, text and the note
}

// Verify checks an extracted bundle entirely offline, and returns the
// first failure: the manifest signature; every file's size and SHA-256
// against the manifest, and that the tree holds no other file; the tree
// note's upstream signature and that every lookup carries that one note;
// every record's inclusion in the tree; every .info, .mod and zip against
// its record; and for an incremental bundle, the tiles that prove the
// tree extends the older one.
func Verify(ctx context.Context, ex *Extracted, opts VerifyOptions) (*Verified, error) {
	m, trusted, err := OpenManifest(ex.Manifest, ex.Sig, opts.Trust)
	if err != nil {
		return nil, err
	}
	if err := checkFiles(ex, m); err != nil {
		return nil, err
	}
	v := &Verified{Manifest: m, Trusted: trusted}
	up, err := note.NewVerifier(opts.Upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream checksum database key: %w", err)
	}
	if up.Name() != m.SumDB.Name {
		return nil, fmt.Errorf("%w: the bundle carries database %q, the upstream key is for %q",
			ErrSignature, m.SumDB.Name, up.Name())
	}
	if err := v.readRecords(ex, up); err != nil {
		return nil, err
	}
	if err := checkExpected(ex, m); err != nil {
		return nil, err
	}
	if err := v.prove(ex); err != nil {
		return nil, err
	}
	if err := v.checkModules(ctx, ex, opts.Workers); err != nil {
		return nil, err
	}
	return v, nil
}

// checkFiles compares the files extracted with the manifest's list.
func checkFiles(ex *Extracted, m Manifest) error {
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		got, ok := ex.Files[f.Name]
		switch {
		case !ok:
			return fmt.Errorf("%w: %s lists %s, which the bundle lacks", ErrMismatch, ManifestName, f.Name)
		case listed[f.Name]:
			return fmt.Errorf("%w: %s lists %s twice", ErrMismatch, ManifestName, f.Name)
		case got.Size != f.Size:
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrMismatch, f.Name, got.Size, f.Size)
		case got.SHA256 != f.SHA256:
			return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s", ErrMismatch, f.Name, got.SHA256, f.SHA256)
		}
		listed[f.Name] = true
	}
	for name := range ex.Files {
		if !listed[name] {
			return fmt.Errorf("%w: %s is not in %s", ErrMismatch, name, ManifestName)
		}
	}
	return nil
}

// readRecords reads every module's lookup and checks the one tree note.
func (v *Verified) readRecords(ex *Extracted, up note.Verifier) error {
	m := v.Manifest
	if len(m.Modules) == 0 {
		return fmt.Errorf("%w: the bundle carries no module", ErrProof)
	}
	for _, mod := range m.Modules {
		p, ver, err := mod.Escaped()
		if err != nil {
			return err
		}
		name := LookupFile(m.SumDB.Name, p, ver)
		if _, ok := ex.Files[name]; !ok {
			return fmt.Errorf("%w: no record of %s@%s: %s is missing", ErrProof, mod.Path, mod.Version, name)
		}
		data, err := os.ReadFile(ex.Path(name))
		if err != nil {
			return err
		}
		id, text, msg, err := tlog.ParseRecord(data)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrProof, name, err)
		}
		if v.Note == nil {
			if err := v.openNote(msg, up); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		} else if !bytes.Equal(msg, v.Note) {
			return fmt.Errorf("%w: %s carries another tree note than the other lookups", ErrProof, name)
		}
		if id != mod.Record || id < 0 || id >= v.Tree.N {
			return fmt.Errorf("%w: %s is record %d, the manifest says %d, in tree #%d", ErrProof, name, id,
				mod.Record, v.Tree.N)
		}
		if !namesModule(text, mod.Path, mod.Version) {
			return fmt.Errorf("%w: %s is a record of another module", ErrProof, name)
		}
		v.Records = append(v.Records, Record{module.Version{Path: mod.Path, Version: mod.Version}, id, text, data})
	}
	return nil
}

// openNote checks the tree note's upstream signature and the manifest's tree.
func (v *Verified) openNote(msg []byte, up note.Verifier) error {
	n, err := note.Open(msg, note.VerifierList(up))
	if err != nil {
		return fmt.Errorf("%w: the tree note is not signed by the upstream key %s: %v", ErrSignature, up.Name(), err)
	}
	tree, err := tlog.ParseTree([]byte(n.Text))
	if err != nil {
		return fmt.Errorf("%w: tree note: %v", ErrProof, err)
	}
	if tree.N != v.Manifest.Tree.Size || tree.Hash.String() != v.Manifest.Tree.Hash {
		return fmt.Errorf("%w: the tree note is for tree #%d %s, the manifest says #%d %s",
			ErrProof, tree.N, tree.Hash, v.Manifest.Tree.Size, v.Manifest.Tree.Hash)
	}
	v.Note, v.Tree = msg, tree
	return nil
}

// namesModule reports whether a record has exactly the zip and go.mod
// lines of path@version.
func namesModule(text []byte, path, version string) bool {
	lines := strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")
	zip, mod := false, false
	for _, line := range lines {
		f := strings.Fields(line)
		switch {
		case len(f) != 3 || f[0] != path:
		case f[1] == version:
			zip = true
			continue
		case f[1] == version+"/go.mod":
			mod = true
			continue
		}
		return false
	}
	return zip && mod
}

// checkExpected refuses a file that is neither a module file of the
// manifest, a version list, the supported marker, a lookup of a module,
// nor a hash tile: a bundle holds nothing else.
func checkExpected(ex *Extracted, m Manifest) error {
	want := map[string]bool{SupportedFile(m.SumDB.Name): true}
	for _, mod := range m.Modules {
		p, ver, _ := mod.Escaped()
		want[ListFile(p)] = true
		want[LookupFile(m.SumDB.Name, p, ver)] = true
		want[ModuleFile(p, ver, ".info")], want[ModuleFile(p, ver, ".mod")] = true, true
		if mod.Zip {
			want[ModuleFile(p, ver, ".zip")] = true
		}
	}
	tiles := "sumdb/" + m.SumDB.Name + "/"
	for name := range ex.Files {
		if want[name] {
			continue
		}
		rest, ok := strings.CutPrefix(name, tiles)
		if t, err := tlog.ParseTilePath(rest); ok && err == nil && t.H == TileHeight && t.L >= 0 {
			continue
		}
		return fmt.Errorf("%w: %s is not a file of a module in the manifest, nor of its checksum database", ErrProof,
			name)
	}
	for name := range want {
		if _, ok := ex.Files[name]; !ok && !strings.HasSuffix(name, ".zip") {
			return fmt.Errorf("%w: the bundle lacks %s", ErrProof, name)
		}
	}
	return nil
}

// prove checks every record's inclusion in the tree, and the since tree.
func (v *Verified) prove(ex *Extracted) error {
	thr := tlog.TileHashReader(v.Tree, SumDBFiles{Ex: ex, DB: v.Manifest.SumDB.Name})
	idx := make([]int64, len(v.Records))
	for i, r := range v.Records {
		idx[i] = tlog.StoredHashIndex(0, r.ID)
	}
	hashes, err := thr.ReadHashes(idx)
	if err != nil {
		return fmt.Errorf("%w: proving the records in tree #%d: %v", ErrProof, v.Tree.N, err)
	}
	for i, r := range v.Records {
		if hashes[i] != tlog.RecordHash(r.Text) {
			return fmt.Errorf("%w: the record of %s (%d) is not the one in tree #%d", ErrProof, r.Module, r.ID,
				v.Tree.N)
		}
	}
	s := v.Manifest.Since
	if s == nil {
		return nil
	}
	if s.Size <= 0 || s.Size > v.Tree.N {
		return fmt.Errorf("%w: since tree #%d is not below tree #%d", ErrProof, s.Size, v.Tree.N)
	}
	h := v.Tree.Hash
	if s.Size < v.Tree.N {
		if h, err = tlog.TreeHash(s.Size, thr); err != nil {
			return fmt.Errorf("%w: proving that tree #%d extends tree #%d: %v", ErrProof, v.Tree.N, s.Size, err)
		}
	}
	if h.String() != s.Hash {
		return fmt.Errorf("%w: tree #%d does not extend tree #%d %s (its first %d records hash to %s)",
			ErrProof, v.Tree.N, s.Size, s.Hash, s.Size, h)
	}
	return nil
}

// checkModules checks every module's files against its record, hashing
// zips on several workers; the first failure in manifest order wins.
func (v *Verified) checkModules(ctx context.Context, ex *Extracted, workers int) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	errs := make([]error, len(v.Records))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() == nil {
					errs[i] = v.checkModule(ex, v.Manifest.Modules[i], v.Records[i])
				}
			}
		})
	}
	for i := range v.Records {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkModule checks one module's .info, .mod, zip and version list.
func (v *Verified) checkModule(ex *Extracted, mod Module, r Record) error {
	p, ver, _ := mod.Escaped()
	target := mod.Path + "@" + mod.Version
	info, err := os.ReadFile(ex.Path(ModuleFile(p, ver, ".info")))
	if err != nil {
		return err
	}
	var fields struct{ Version string }
	if err := json.Unmarshal(info, &fields); err != nil || fields.Version != mod.Version {
		return fmt.Errorf("%w: the .info of %s is not for that version", ErrMismatch, target)
	}
	goMod, err := os.ReadFile(ex.Path(ModuleFile(p, ver, ".mod")))
	if err != nil {
		return err
	}
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(goMod)), nil
	})
	if err != nil {
		return err
	}
	if want := recordHash(r.Text, mod.Path, mod.Version+"/go.mod"); h != want {
		return fmt.Errorf("%w: the go.mod of %s has hash %s, its record says %s", ErrMismatch, target, h, want)
	}
	if mod.Zip {
		name := ModuleFile(p, ver, ".zip")
		h, err := ex.zips.hash(name, ex.Path(name))
		if err != nil {
			return fmt.Errorf("%w: the zip of %s: %v", ErrMismatch, target, err)
		}
		if want := recordHash(r.Text, mod.Path, mod.Version); h != want {
			return fmt.Errorf("%w: the zip of %s has hash %s, its record says %s", ErrMismatch, target, h, want)
		}
	}
	list, err := os.ReadFile(ex.Path(ListFile(p)))
	if err != nil {
		return err
	}
	if !slices.Contains(strings.Fields(string(list)), mod.Version) {
		return fmt.Errorf("%w: %s does not list %s", ErrMismatch, ListFile(p), mod.Version)
	}
	return nil
}

// recordHash returns the hash of the line "path version h1:..." of a record.
func recordHash(text []byte, path, version string) string {
	for _, line := range strings.Split(string(text), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == path && f[1] == version {
			return f[2]
		}
	}
	return ""
}
