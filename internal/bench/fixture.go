package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/modgate/modgate/internal/modfixture"
)

// defaultWorkload is the module whose dependency graph is the workload.
const defaultWorkload = "github.com/caddyserver/caddy/v2@v2.11.9"

// The synthetic large module of scenario 4.
const (
	bigPath    = "example.com/modgate-bench/big"
	bigVersion = "v1.0.0"
	bigSize    = 300 << 20
)

// minZips is the least number of module zips a workload must have.
const minZips = 150

// fixture is the built fixture directory.
type fixture struct {
	dir      string
	tree     string // the download tree: a file:// GOPROXY and the upstream's files
	workload string // directory with the workload's go.mod and go.sum
	sums     string // hash cache of modfixture
	zips     int
}

// buildFixture builds (once) or reuses the fixture in dir.
func buildFixture(ctx context.Context, dir, workload string, env *goEnv, logf func(string, ...any)) (*fixture, error) {
	fx := &fixture{
		dir: dir, tree: filepath.Join(dir, "modcache", "cache", "download"),
		workload: filepath.Join(dir, "workload"), sums: filepath.Join(dir, "sums.txt"),
	}
	done := filepath.Join(dir, "complete")
	if b, err := os.ReadFile(done); err == nil && strings.TrimSpace(string(b)) == workload {
		fx.zips = countZips(fx.tree)
		logf("fixture %s: %s, %d module zips", dir, workload, fx.zips)
		return fx, nil
	}
	logf("building the fixture in %s from %s (network)", dir, workload)
	if err := os.MkdirAll(fx.workload, 0o755); err != nil {
		return nil, err
	}
	if err := fetchWorkload(ctx, env, workload, dir, fx.workload); err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := env.command(
		ctx,
		fx.workload,
		[]string{"GOMODCACHE=" + filepath.Join(dir, "modcache")},
		"mod",
		"download",
		"-json",
	)
	if err := downloadErrors(out, err); err != nil {
		return nil, fmt.Errorf(
			"downloading the workload (pick another -workload if the registry refuses some modules): %w",
			err,
		)
	}
	fx.zips = countZips(fx.tree)
	logf("downloaded %d module zips in %v", fx.zips, time.Since(start).Round(time.Millisecond))
	if fx.zips < minZips {
		return nil, fmt.Errorf("workload %s has %d module zips, want at least %d", workload, fx.zips, minZips)
	}
	logf("writing the synthetic %d MiB module %s@%s", bigSize>>20, bigPath, bigVersion)
	if err := modfixture.WriteSynthetic(fx.tree, bigPath, bigVersion, bigSize); err != nil {
		return nil, err
	}
	return fx, os.WriteFile(done, []byte(workload+"\n"), 0o644)
}

// fetchWorkload downloads module@version and writes its go.mod (renamed)
// and go.sum into dst.
func fetchWorkload(ctx context.Context, env *goEnv, workload, dir, dst string) error {
	seed := filepath.Join(dir, "seed")
	defer removeAll(seed)
	out, err := env.command(
		ctx,
		dst,
		[]string{"GOMODCACHE=" + seed, "GOFLAGS=-mod=mod"},
		"mod",
		"download",
		"-json",
		workload,
	)
	if err := downloadErrors(out, err); err != nil {
		return fmt.Errorf("downloading %s: %w", workload, err)
	}
	var info struct{ Path, Version, Zip string }
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("go mod download -json %s: %w", workload, err)
	}
	zr, err := zip.OpenReader(info.Zip)
	if err != nil {
		return err
	}
	defer zr.Close()
	prefix := info.Path + "@" + info.Version + "/"
	for _, name := range []string{"go.mod", "go.sum"} {
		f, err := zr.Open(prefix + name)
		if err != nil {
			return fmt.Errorf("%s has no %s: %w", workload, name, err)
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		if name == "go.mod" {
			if data, err = renameModule(data); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// renameModule gives the workload's go.mod its own module path and drops
// replace directives (they could point at directories).
func renameModule(data []byte) ([]byte, error) {
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		return nil, err
	}
	if err := f.AddModuleStmt("modgate.bench/workload"); err != nil {
		return nil, err
	}
	for _, r := range f.Replace {
		if err := f.DropReplace(r.Old.Path, r.Old.Version); err != nil {
			return nil, err
		}
	}
	f.Cleanup()
	return f.Format()
}

// downloadErrors reports the failures in go mod download -json output.
func downloadErrors(out []byte, runErr error) error {
	dec := json.NewDecoder(bytes.NewReader(out))
	var errs []string
	for {
		var m struct{ Path, Version, Error string }
		if err := dec.Decode(&m); err != nil {
			break
		}
		if m.Error != "" {
			errs = append(errs, m.Path+"@"+m.Version+": "+m.Error)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d modules failed, first: %s", len(errs), errs[0])
	}
	return runErr
}

// countZips counts the module zips in a download tree.
func countZips(tree string) int {
	n := 0
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".zip") && strings.Contains(p, "/@v/") &&
			!strings.Contains(filepath.ToSlash(p), "/"+bigPath+"/") {
			n++
		}
		return nil
	})
	return n
}

// buildModgate builds ./cmd/modgate of the repository holding the working
// directory.
func buildModgate(ctx context.Context, work string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", errors.New("run the bench inside the modgate repository, or pass -modgate")
	}
	bin := filepath.Join(work, "modgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/modgate")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building modgate: %v\n%s", err, out)
	}
	return bin, nil
}

// removeAll removes a tree, module cache directories (read-only) included.
func removeAll(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	os.RemoveAll(dir)
}
