package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/cache"
	"github.com/modgate/modgate/cache/bundle"
	"github.com/modgate/modgate/proxy/admin"
	"github.com/modgate/modgate/signer"
)

// ErrBundleGap reports an incremental bundle whose older tree is not the
// one this gate has witnessed: a bundle of the chain is missing.
var ErrBundleGap = errors.New("a bundle is missing from the chain")

// importedKey marks a cache that holds imported bundles: an offline gate
// then says a missing module is not in its air-gapped cache.
const importedKey = "bundle/imported"

// Import implements admin.Bundles. It spools the bundle into a temporary
// directory of the data directory, verifies all of it (as bundle verify
// does, trusting the gate's own key and trust), has the witness accept
// its tree (it must extend the witnessed one or be extended by it; an
// inconsistent tree is recorded as a fork), and only then stores the
// modules. The first failure rejects the whole bundle.
func (b *Bundler) Import(ctx context.Context, r io.Reader, trust []string) (admin.BundleImportResult, error) {
	dir, err := os.MkdirTemp(b.cfg.SpoolDir, "bundle-import-")
	if err != nil {
		return admin.BundleImportResult{}, fmt.Errorf("spooling the bundle: %w", err)
	}
	defer os.RemoveAll(dir)
	t0 := time.Now()
	ex, err := bundle.Extract(ctx, r, dir, b.cfg.Limits)
	if err != nil {
		return admin.BundleImportResult{}, err
	}
	t1 := time.Now()
	keys := append([]string{b.cfg.Verifier}, trust...)
	v, err := bundle.Verify(ctx, ex, bundle.VerifyOptions{Upstream: b.cfg.Upstream, Trust: keys})
	if err != nil {
		return admin.BundleImportResult{}, err
	}
	t2 := time.Now()
	if err := b.witness(ctx, ex, v); err != nil {
		return admin.BundleImportResult{}, err
	}
	t3 := time.Now()
	zips, err := b.store(ctx, ex, v)
	if err != nil {
		return admin.BundleImportResult{}, err
	}
	t4 := time.Now()
	m := v.Manifest
	res := admin.BundleImportResult{Modules: len(m.Modules), Zips: zips, TreeSize: m.Tree.Size, TreeHash: m.Tree.Hash,
		Witnessed: b.cfg.Witness.TreeSize(), Signer: m.Signer, Created: m.Created.UTC().Format(time.RFC3339)}
	if m.Since != nil {
		res.Since = m.Since.Size
	}
	mark, _ := json.Marshal(res)
	if err := b.g.cfg.Cache.PutMarked(ctx, importedKey, mark, trustUnknown); err != nil {
		return admin.BundleImportResult{}, fmt.Errorf("storing the import: %w", err)
	}
	b.log.Info("bundle imported", zap.Int("modules", res.Modules), zap.Int64("tree_size", res.TreeSize),
		zap.Int64("witnessed", res.Witnessed), zap.Duration("read", t1.Sub(t0)), zap.Duration("verify", t2.Sub(t1)),
		zap.Duration("witness", t3.Sub(t2)), zap.Duration("store", t4.Sub(t3)))
	b.g.refreshVulnAfterImport(ctx, m.Modules) // a vulndb it brings is in force at once (vuln.go)
	return res, nil
}

// witness checks the chain and has the witness import the bundle's tree.
func (b *Bundler) witness(ctx context.Context, ex *bundle.Extracted, v *bundle.Verified) error {
	m := v.Manifest
	have, n := b.cfg.Witness.TreeSize(), v.Tree.N
	if s := m.Since; s != nil && have < n && have != s.Size {
		if have == 0 {
			return fmt.Errorf("%w: this bundle extends tree #%d, and this gate has witnessed no tree yet: "+
				"import the bundle of tree #%d first", ErrBundleGap, s.Size, s.Size)
		}
		return fmt.Errorf("%w: this bundle extends tree #%d, but this gate has witnessed tree #%d: "+
			"import the bundle of tree #%d first, or export again with --since-size %d",
			ErrBundleGap, s.Size, have, s.Size, have)
	}
	in := signer.Import{Note: v.Note, Tiles: bundle.SumDBFiles{Ex: ex, DB: m.SumDB.Name}, At: m.Created}
	if f := m.HistoryFirst; f != nil {
		in.Seen = append(in.Seen, signer.HistoryEntry{Size: f.Size, Time: f.Time})
	}
	for i, mod := range m.Modules {
		r := v.Records[i]
		in.Records = append(in.Records, signer.ImportRecord{Module: r.Module, ID: r.ID, Text: r.Text})
		if mod.FirstSeen != nil {
			in.Seen = append(in.Seen, signer.HistoryEntry{Size: mod.FirstSeen.Size, Time: mod.FirstSeen.Time})
		}
	}
	_, err := b.cfg.Witness.Import(ctx, in)
	if err != nil && errors.Is(err, fs.ErrNotExist) && have > 0 && have != n {
		return fmt.Errorf("%w;\nthe bundle does not carry the tiles that prove tree #%d and the witnessed "+
			"tree #%d are "+
			"one timeline: export it with --since-size %d", err, n, have, have)
	}
	if errors.Is(err, signer.ErrFork) {
		return &admin.BundleStatusError{Status: http.StatusConflict, Err: err}
	}
	return err
}

// store stores every module of a verified bundle (the zips on
// GOMAXPROCS workers) and merges the version lists; it returns how many
// zips it stored.
func (b *Bundler) store(ctx context.Context, ex *bundle.Extracted, v *bundle.Verified) (int, error) {
	c := b.g.cfg.Cache
	var zips []string // escaped module/@v/version of each zip
	lists := map[string][]string{}
	for _, mod := range v.Manifest.Modules {
		p, ver, err := mod.Escaped()
		if err != nil {
			return 0, err
		}
		esc := p + "/@v/" + ver
		for _, f := range []struct {
			kind Kind
			ext  string
			mark byte
		}{{KindInfo, ".info", trustUnknown}, {KindMod, ".mod", trustSumDB}} {
			data, err := os.ReadFile(ex.Path(bundle.ModuleFile(p, ver, f.ext)))
			if err != nil {
				return 0, err
			}
			if err := c.PutMarked(ctx, string(f.kind)+"/"+esc, data, f.mark); err != nil {
				return 0, fmt.Errorf("storing %s: %w", esc+f.ext, err)
			}
		}
		if mod.Zip {
			zips = append(zips, esc)
		}
		lists[p] = append(lists[p], mod.Version)
	}
	if err := b.storeZips(ctx, ex, zips); err != nil {
		return 0, err
	}
	for p, vs := range lists {
		if err := b.mergeList(ctx, p, vs); err != nil {
			return 0, err
		}
	}
	return len(zips), nil
}

// storeZips stores the zips of escaped module/@v/version paths on
// GOMAXPROCS workers.
func (b *Bundler) storeZips(ctx context.Context, ex *bundle.Extracted, zips []string) error {
	errs := make([]error, len(zips))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range jobs {
				if ctx.Err() == nil {
					errs[i] = b.storeZip(ctx, ex.Path(zips[i]+".zip"), "zip/"+zips[i])
				}
			}
		})
	}
	for i := range zips {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// storeZip stores a verified zip from the spool directory.
func (b *Bundler) storeZip(ctx context.Context, path, key string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := b.g.cfg.Cache.PutBlobMarked(ctx, key, f, st.Size(), trustSumDB); err != nil {
		return fmt.Errorf("storing %s: %w", key, err)
	}
	return nil
}

// mergeList adds imported versions to a module's stored version list and
// answers @latest with the newest of them (a release before a pre-release).
func (b *Bundler) mergeList(ctx context.Context, escPath string, vs []string) error {
	c := b.g.cfg.Cache
	if e, err := c.Get(ctx, string(KindList)+"/"+escPath); err == nil {
		vs = append(vs, strings.Fields(string(e.Value))...)
	} else if !errors.Is(err, cache.ErrNotFound) {
		return err
	}
	semver.Sort(vs)
	vs = slices.Compact(vs)
	if err := c.PutMarked(ctx, string(KindList)+"/"+escPath, []byte(strings.Join(vs, "\n")+"\n"),
		trustUnknown); err != nil {
		return fmt.Errorf("storing the version list of %s: %w", escPath, err)
	}
	latest := vs[len(vs)-1]
	for _, v := range slices.Backward(vs) {
		if semver.Prerelease(v) == "" {
			latest = v
			break
		}
	}
	escVers, err := module.EscapeVersion(latest)
	if err != nil {
		return err
	}
	info, err := c.Get(ctx, string(KindInfo)+"/"+escPath+"/@v/"+escVers)
	if err != nil {
		return fmt.Errorf("the .info of %s@%s: %w", escPath, latest, err)
	}
	return c.PutMarked(ctx, string(KindLatest)+"/"+escPath, info.Value, trustUnknown)
}

// offlineMiss is the error of an offline gate for an object it does not
// hold: a gate that imported bundles says it is not in its air-gapped
// cache.
func (g *Gate) offlineMiss(ctx context.Context, req Request) error {
	if _, err := g.cfg.Cache.Get(ctx, importedKey); err == nil {
		return &airGapMiss{req.Target()}
	}
	return fmt.Errorf("%s: %w", req.Target(), ErrOffline)
}

// airGapMiss is an offline miss of a gate that imported bundles.
type airGapMiss struct{ target string }

func (e *airGapMiss) Error() string { return e.target + " is not in this air-gapped cache" }
func (e *airGapMiss) Unwrap() error { return ErrOffline }
