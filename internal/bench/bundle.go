package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/cache/bundle"
)

// bundleScenario is the number of the air-gap bundle scenario (-only 20):
// numbered apart from the others, so that scenarios added meanwhile do
// not take its number.
const bundleScenario = 20

// bundles measures air-gap bundles (docs/BUNDLE.md): a gate exports the
// workload's go.sum, and a fresh --offline gate imports the bundle, each
// run paired with dirhash.HashZip over the same zips (one core, as the go
// command hashes); the figure is the import's speed as a share of
// HashZip's. The peak RSS of the exporting and of each importing gate is
// the memory figure.
func (b *runner) bundles(ctx context.Context) error {
	out, err := startGate(ctx, b.bin, b.dir("bundle-export"), b.up.gateArgs())
	if err != nil {
		return err
	}
	defer out.stop()
	file := filepath.Join(b.work, "workload.tar.zst")
	goSum, err := zipsGoSum(filepath.Join(b.fx.workload, "go.sum"), b.fx.tree, filepath.Join(b.work, "bundle.go.sum"))
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	peak := out.sampleMem(stop)
	start := time.Now()
	err = b.bundleCLI(ctx, out, "export", "-o", file, "--go-sum", goSum)
	close(stop)
	exportMem := <-peak
	if err != nil {
		return err
	}
	b.logf("bundle export: %.2fs, peak RSS %s", time.Since(start).Seconds(), mib(exportMem.RSS))
	zips, size, err := bundleZips(ctx, file, b.dir("bundle-zips"))
	if err != nil {
		return err
	}
	imports, hashes, importRSS, err := b.bundleRuns(ctx, file, out.verifier, zips)
	if err != nil {
		return err
	}
	r := median(ratios(hashes, imports))
	met := r >= 0.7
	b.add("20a", fmt.Sprintf("bundle import speed ÷ dirhash.HashZip (%d zips, %.0f MiB)", len(zips),
		float64(size)/(1<<20)),
		fmt.Sprintf("%.2f (%.2fs vs %.2fs)", r, median(imports), median(hashes)), "≥ 0.7", &met)
	for _, m := range []struct {
		id, what string
		kib      int64
	}{{"20b", "bundle export, peak RSS of the gate", exportMem.RSS}, {"20c", "bundle import, peak RSS of the gate",
		importRSS}} {
		met := m.kib <= 150<<10
		b.add(m.id, m.what, mib(m.kib), "≤ 150 MiB", &met)
	}
	return nil
}

// bundleRuns imports the bundle into fresh offline gates, each run paired
// with HashZip over its zips, and returns the seconds of each and the
// importing gates' peak RSS.
func (b *runner) bundleRuns(ctx context.Context, file, trust string,
	zips []string) (imports, hashes []float64, importRSS int64, err error) {
	for i := range b.o.runs {
		in, err := startGate(ctx, b.bin, b.dir("bundle-import"), b.up.gateArgs(), "--offline")
		if err != nil {
			return nil, nil, 0, err
		}
		runImport := func() error {
			stop := make(chan struct{})
			peak := in.sampleMem(stop)
			start := time.Now()
			err := b.bundleCLI(ctx, in, "import", file, "--trust", trust)
			imports = append(imports, time.Since(start).Seconds())
			close(stop)
			importRSS = max(importRSS, (<-peak).RSS)
			return err
		}
		runHash := func() error {
			start := time.Now()
			for _, z := range zips {
				if _, err := dirhash.HashZip(z, dirhash.Hash1); err != nil {
					return fmt.Errorf("HashZip %s: %w", z, err)
				}
			}
			hashes = append(hashes, time.Since(start).Seconds())
			return nil
		}
		first, second := runImport, runHash
		if i%2 == 1 {
			first, second = runHash, runImport
		}
		err = first()
		if err == nil {
			err = second()
		}
		in.stop()
		if err != nil {
			return nil, nil, 0, err
		}
		b.logf("bundle run %d: import %.2fs, HashZip %.2fs", i+1, last(imports), last(hashes))
	}
	return imports, hashes, importRSS, nil
}

// bundleCLI runs modgate bundle against gate g.
func (b *runner) bundleCLI(ctx context.Context, g *gateProc, args ...string) error {
	args = append(append([]string{"bundle"}, args...), "--admin", "http://"+g.admin, "--data-dir", g.dataDir)
	out, err := exec.CommandContext(ctx, b.bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("modgate %s: %w\n%s", strings.Join(args[:2], " "), err, tail(out, 2000))
	}
	return nil
}

// bundleZips extracts a bundle into dir and returns its zips and their size.
func bundleZips(ctx context.Context, file, dir string) ([]string, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := bundle.Extract(ctx, f, dir, bundle.Limits{}); err != nil {
		return nil, 0, err
	}
	var zips []string
	var size int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".zip") {
			info, ierr := d.Info()
			if ierr != nil {
				return ierr
			}
			zips, size = append(zips, p), size+info.Size()
		}
		return err
	})
	return zips, size, err
}

// zipsGoSum writes the lines of the module versions of a go.sum whose zip
// and .info the fixture's tree holds (the workload's zips): it has no
// .info for the versions the go command needs the go.mod of only.
func zipsGoSum(src, tree, dst string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	zip := map[string]bool{}
	lines := strings.Split(string(data), "\n")
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 || strings.HasSuffix(f[1], "/go.mod") {
			continue
		}
		base := filepath.Join(tree, mustEscape(f[0]), "@v", mustEscapeVersion(f[1]))
		if _, err := os.Stat(base + ".zip"); err != nil {
			continue
		}
		if _, err := os.Stat(base + ".info"); err == nil {
			zip[f[0]+" "+f[1]] = true
		}
	}
	var out strings.Builder
	for _, line := range lines {
		if f := strings.Fields(line); len(f) == 3 && zip[f[0]+" "+strings.TrimSuffix(f[1], "/go.mod")] {
			out.WriteString(line + "\n")
		}
	}
	return dst, os.WriteFile(dst, []byte(out.String()), 0o644)
}
