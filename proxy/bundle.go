package proxy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/cache/bundle"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/signer"
)

// BundleWitness is the witness as bundles need it. *signer.Witness
// satisfies it.
type BundleWitness interface {
	Import(ctx context.Context, in signer.Import) (tlog.Tree, error)
	TreeSize() int64
	History() *signer.HistoryStatus
}

var _ BundleWitness = (*signer.Witness)(nil)

// BundleConfig configures a Bundler. Gate, Witness and Signer are required.
type BundleConfig struct {
	Gate    *Gate
	Witness BundleWitness
	// Signer is the enterprise note key: it signs exported manifests, and
	// its verifier key is trusted for imports.
	Signer note.Signer
	// Verifier is Signer's verifier key.
	Verifier string
	// Upstream is the upstream checksum database's verifier key.
	Upstream string
	// SpoolDir holds an import while it is verified; it should be in the
	// data directory, so that a large bundle does not fill a small /tmp.
	// "" means the gate's SpoolDir.
	SpoolDir string
	Limits   bundle.Limits // for imports; zero values mean the defaults
	// MaxModules bounds one export; 0 means 100,000.
	MaxModules int
}

// Bundler exports and imports air-gap bundles (docs/BUNDLE.md). It
// implements admin.Bundles.
type Bundler struct {
	cfg BundleConfig
	g   *Gate
	log *zap.Logger
}

var _ admin.Bundles = (*Bundler)(nil)

// NewBundler returns a Bundler for cfg.
func NewBundler(cfg BundleConfig) (*Bundler, error) {
	if cfg.Gate == nil || cfg.Witness == nil || cfg.Signer == nil {
		return nil, errors.New("proxy: a Bundler needs the Gate, the Witness and the Signer")
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = cfg.Gate.cfg.SpoolDir
	}
	if cfg.MaxModules == 0 {
		cfg.MaxModules = 100_000
	}
	return &Bundler{cfg: cfg, g: cfg.Gate, log: cfg.Gate.log.Named("bundle")}, nil
}

// vulnDBModule is the module of the Go vulnerability database.
const vulnDBModule = "golang.org/x/vulndb"

// exportItem is one module version of an export.
type exportItem struct {
	mod              module.Version
	escPath, escVers string
	zip              bool
	id               int64
}

// Export implements admin.Bundles: it gathers the modules the request
// names, fetches and verifies through the pipeline what the gate lacks
// (policy applies: a denied version fails the export with the rule's
// reason), proves every record against one witnessed tree head, then
// streams the bundle, reading each object from the cache as it writes it.
func (b *Bundler) Export(ctx context.Context, req admin.BundleExportRequest, start func(zstd bool) io.Writer) error {
	items, err := b.gather(ctx, req)
	if err != nil {
		return err
	}
	for i := range items {
		if err := b.fetch(ctx, &items[i]); err != nil {
			return err
		}
	}
	msg, tree, err := b.g.cfg.Witness.Current(ctx)
	if err != nil {
		return fmt.Errorf("the witnessed tree head: %w", err)
	}
	m, err := b.manifest(items, tree)
	if err != nil {
		return err
	}
	tiles, err := b.proofTiles(ctx, items, tree, req.SinceSize, &m)
	if err != nil {
		return err
	}
	entries := b.entries(items, tiles, tree, msg)
	c := bundle.Tar
	if req.Zstd {
		c = bundle.TarZst
	}
	w, err := bundle.NewWriter(start(req.Zstd), c)
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, r, size, err := e.open(ctx)
		if err != nil {
			return fmt.Errorf("reading %s: %w", e.name, err)
		}
		if data != nil {
			r = bytes.NewReader(data)
		}
		err = w.Add(e.name, size, r)
		if c, ok := r.(io.Closer); ok {
			c.Close()
		}
		if err != nil {
			return err
		}
	}
	_, err = w.Finish(m, b.cfg.Signer)
	return err
}

// proofTiles returns the tiles that prove the items' records in tree, and
// with since, that tree extends the tree of that size (set in m.Since).
func (b *Bundler) proofTiles(ctx context.Context, items []exportItem, tree tlog.Tree, since int64,
	m *bundle.Manifest) ([]tlog.Tile, error) {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.id
	}
	if since < 0 || since > tree.N {
		return nil, &admin.BundleStatusError{Status: http.StatusBadRequest,
			Err: fmt.Errorf("--since tree #%d is not inside this gate's witnessed tree #%d", since, tree.N)}
	}
	readTile := func(t tlog.Tile) ([]byte, error) { return b.g.cfg.Witness.Tile(ctx, t) }
	tiles, sinceHash, err := bundle.ProofTiles(tree, ids, since, readTile)
	if err != nil {
		return nil, err
	}
	if since > 0 {
		if since == tree.N {
			sinceHash = tree.Hash
		}
		m.Since = &bundle.Tree{Size: since, Hash: sinceHash.String()}
	}
	return tiles, nil
}

// gather returns the module versions of a request, sorted and without
// duplicates (a zip wanted once is carried), less the older bundle's.
func (b *Bundler) gather(ctx context.Context, req admin.BundleExportRequest) ([]exportItem, error) {
	want := map[module.Version]bool{} // module version -> zip wanted
	add := func(m module.Version, zip bool) error {
		if err := module.Check(m.Path, m.Version); err != nil || module.CanonicalVersion(m.Version) != m.Version {
			return &admin.BundleStatusError{Status: http.StatusBadRequest,
				Err: fmt.Errorf("%s@%s is not a module version with a canonical version", m.Path, m.Version)}
		}
		want[m] = want[m] || zip
		if len(want) > b.cfg.MaxModules {
			return &admin.BundleStatusError{Status: http.StatusBadRequest,
				Err: fmt.Errorf("more than %d module versions in one bundle", b.cfg.MaxModules)}
		}
		return nil
	}
	for _, m := range req.Modules {
		if err := add(module.Version{Path: m.Path, Version: m.Version}, !m.ModOnly); err != nil {
			return nil, err
		}
	}
	for _, gm := range req.GoMods {
		if err := b.walk(ctx, []byte(gm), add); err != nil {
			return nil, err
		}
	}
	if req.WithVulnDB {
		v, err := b.latest(ctx, vulnDBModule)
		if err != nil {
			return nil, err
		}
		if err := add(module.Version{Path: vulnDBModule, Version: v}, true); err != nil {
			return nil, err
		}
	}
	for _, m := range req.SinceModules {
		delete(want, module.Version{Path: m.Path, Version: m.Version})
	}
	if len(want) == 0 {
		return nil, &admin.BundleStatusError{Status: http.StatusBadRequest, Err: errors.New("no module to export")}
	}
	items := make([]exportItem, 0, len(want))
	for m, zip := range want {
		p, _ := module.EscapePath(m.Path)
		v, _ := module.EscapeVersion(m.Version)
		items = append(items, exportItem{mod: m, escPath: p, escVers: v, zip: zip})
	}
	slices.SortFunc(items, func(a, b exportItem) int {
		return cmp.Or(cmp.Compare(a.mod.Path, b.mod.Path), semver.Compare(a.mod.Version, b.mod.Version))
	})
	return items, nil
}

// walk adds the transitive requirements of a go.mod, reading each
// required version's .mod through the pipeline (verified, under policy).
func (b *Bundler) walk(ctx context.Context, goMod []byte, add func(module.Version, bool) error) error {
	seen := map[module.Version]bool{}
	queue := [][]byte{goMod}
	for len(queue) > 0 {
		f, err := modfile.ParseLax("go.mod", queue[0], nil)
		if err != nil {
			return &admin.BundleStatusError{Status: http.StatusBadRequest, Err: fmt.Errorf("--go-mod: %w", err)}
		}
		queue = queue[1:]
		for _, r := range f.Require {
			if seen[r.Mod] {
				continue
			}
			seen[r.Mod] = true
			if err := add(r.Mod, true); err != nil {
				return err
			}
			data, err := b.file(ctx, KindMod, r.Mod)
			if err != nil {
				return err
			}
			queue = append(queue, data)
		}
	}
	return nil
}

// file returns a verified small module file through the pipeline.
func (b *Bundler) file(ctx context.Context, kind Kind, m module.Version) ([]byte, error) {
	p, err := module.EscapePath(m.Path)
	if err != nil {
		return nil, err
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		return nil, err
	}
	req, err := moduleRequest(kind, p, v)
	if err != nil {
		return nil, err
	}
	if _, err := b.g.allow(ctx, m.Path, m.Version); err != nil {
		return nil, err
	}
	data, _, err := b.g.load(ctx, req)
	return data, err
}

// latest resolves a module's newest allowed version through the pipeline.
func (b *Bundler) latest(ctx context.Context, path string) (string, error) {
	p, err := module.EscapePath(path)
	if err != nil {
		return "", err
	}
	req, err := moduleRequest(KindList, p, "")
	if err != nil {
		return "", err
	}
	data, _, err := b.g.load(ctx, req)
	if err != nil {
		return "", fmt.Errorf("the versions of %s: %w", path, err)
	}
	data, _, err = b.g.applyPolicy(ctx, req, data)
	if err != nil {
		return "", err
	}
	vs := strings.Fields(string(data))
	semver.Sort(vs)
	if len(vs) == 0 {
		return "", fmt.Errorf("%s has no version this gate allows", path)
	}
	return vs[len(vs)-1], nil
}

// fetch makes sure the gate holds the item's verified files, fetching
// them through the pipeline (policy first), and finds its record.
func (b *Bundler) fetch(ctx context.Context, it *exportItem) error {
	if b.g.private(it.mod.Path) {
		return &admin.BundleStatusError{Status: http.StatusBadRequest, Err: fmt.Errorf(
			"%s is private (%s): it has no checksum-database record a bundle could carry",
			it.mod, b.g.privatePattern(it.mod.Path))}
	}
	for _, k := range []Kind{KindInfo, KindMod} {
		if _, err := b.file(ctx, k, it.mod); err != nil {
			return fmt.Errorf("%s: %w", it.mod, err)
		}
	}
	if it.zip {
		req, err := moduleRequest(KindZip, it.escPath, it.escVers)
		if err != nil {
			return err
		}
		head, _ := http.NewRequestWithContext(ctx, http.MethodHead, "/", nil)
		if _, err := b.g.serveZip(ctx, discard{}, head, req); err != nil {
			return fmt.Errorf("%s: %w", it.mod, err)
		}
	}
	id, ok, err := b.g.cfg.Witness.StoredRecord(ctx, it.mod)
	if err != nil || !ok {
		return fmt.Errorf("%s: no verified checksum-database record stored: %v", it.mod, err)
	}
	it.id = id
	return nil
}

// discard is a ResponseWriter that keeps nothing: a HEAD through serveZip
// stores and checks the zip without copying it.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) WriteHeader(int)             {}

// manifest returns the manifest of an export, before its files.
func (b *Bundler) manifest(items []exportItem, tree tlog.Tree) (bundle.Manifest, error) {
	m := bundle.Manifest{
		Created: b.g.cfg.Now().UTC().Truncate(time.Second),
		SumDB:   bundle.SumDB{Name: b.g.cfg.Witness.Name(), Key: b.cfg.Upstream},
		Signer:  b.cfg.Verifier,
		Tree:    bundle.Tree{Size: tree.N, Hash: tree.Hash.String()},
	}
	if h := b.cfg.Witness.History(); h != nil {
		m.HistoryFirst = &bundle.Seen{Size: h.First.Size, Time: h.First.Time.UTC()}
	}
	for _, it := range items {
		if it.id >= tree.N {
			return bundle.Manifest{}, fmt.Errorf("the record of %s is not in the witnessed tree #%d", it.mod, tree.N)
		}
		mod := bundle.Module{Path: it.mod.Path, Version: it.mod.Version, Zip: it.zip, Record: it.id}
		if t, size, ok := b.g.cfg.Witness.FirstSeen(it.id); ok {
			mod.FirstSeen = &bundle.Seen{Size: size, Time: t.UTC()}
		}
		m.Modules = append(m.Modules, mod)
	}
	return m, nil
}

// bundleEntry is a file of an export, read when it is written.
type bundleEntry struct {
	name string
	// open returns the file's bytes, or a reader (closed if it is an
	// io.Closer) and its size.
	open func(ctx context.Context) (data []byte, r io.Reader, size int64, err error)
}

// small is an open func for bytes known at once.
func small(data []byte) func(context.Context) ([]byte, io.Reader, int64, error) {
	return func(context.Context) ([]byte, io.Reader, int64, error) { return data, nil, int64(len(data)), nil }
}

// entries returns the files of an export, sorted by name.
func (b *Bundler) entries(items []exportItem, tiles []tlog.Tile, tree tlog.Tree, msg []byte) []bundleEntry {
	db := b.g.cfg.Witness.Name()
	out := []bundleEntry{{bundle.SupportedFile(db), small([]byte{})}}
	lists := map[string][]string{}
	cached := func(key string) func(context.Context) ([]byte, io.Reader, int64, error) {
		return func(ctx context.Context) ([]byte, io.Reader, int64, error) {
			e, err := b.g.cfg.Cache.Get(ctx, key)
			return e.Value, nil, int64(len(e.Value)), err
		}
	}
	for _, it := range items {
		esc := it.escPath + "/@v/" + it.escVers
		lists[it.escPath] = append(lists[it.escPath], it.mod.Version)
		out = append(out,
			bundleEntry{bundle.ModuleFile(it.escPath, it.escVers, ".info"), cached("info/" + esc)},
			bundleEntry{bundle.ModuleFile(it.escPath, it.escVers, ".mod"), cached("mod/" + esc)},
			bundleEntry{bundle.LookupFile(db, it.escPath, it.escVers), b.lookupEntry(it, tree, msg)})
		if it.zip {
			out = append(out, bundleEntry{bundle.ModuleFile(it.escPath, it.escVers, ".zip"),
				func(ctx context.Context) ([]byte, io.Reader, int64, error) {
					blob, err := b.g.openVerified(ctx, "zip/"+esc)
					if err != nil {
						return nil, nil, 0, err
					}
					return nil, blob, blob.Size(), nil
				}})
		}
	}
	for p, vs := range lists {
		semver.Sort(vs)
		out = append(out, bundleEntry{bundle.ListFile(p), small([]byte(strings.Join(vs, "\n") + "\n"))})
	}
	for _, t := range tiles {
		out = append(out, bundleEntry{"sumdb/" + db + "/" + t.Path(),
			func(ctx context.Context) ([]byte, io.Reader, int64, error) {
				data, err := b.g.cfg.Witness.Tile(ctx, t)
				return data, nil, int64(len(data)), err
			}})
	}
	slices.SortFunc(out, func(a, b bundleEntry) int { return cmp.Compare(a.name, b.name) })
	return out
}

// lookupEntry is the lookup answer of an item: its record, proven in
// tree, and the co-signed note of tree.
func (b *Bundler) lookupEntry(it exportItem, tree tlog.Tree,
	msg []byte) func(context.Context) ([]byte, io.Reader, int64, error) {
	return func(ctx context.Context) ([]byte, io.Reader, int64, error) {
		data, err := b.g.cfg.Witness.Lookup(ctx, it.mod)
		if err != nil {
			return nil, nil, 0, err
		}
		id, text, _, err := tlog.ParseRecord(data)
		if err != nil || id != it.id || id >= tree.N {
			return nil, nil, 0, fmt.Errorf("the record of %s changed during the export (%v)", it.mod, err)
		}
		rec, err := tlog.FormatRecord(id, text)
		if err != nil {
			return nil, nil, 0, err
		}
		rec = append(rec, msg...)
		return rec, nil, int64(len(rec)), nil
	}
}
