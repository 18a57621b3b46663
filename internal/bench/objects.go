package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"
)

// big measures scenario 4: modgate's memory while 8 clients download the
// 300 MiB zip at once, cold (through the GOPROXY endpoint: one upstream
// fetch, 8 waiters) and then warm (through interception).
func (b *runner) big(ctx context.Context) error {
	g, err := startGate(ctx, b.bin, b.dir("big"), b.up.gateArgs())
	if err != nil {
		return err
	}
	defer g.stop()
	p := "/" + mustEscape(bigPath) + "/@v/" + bigVersion + ".zip"
	fi, err := os.Stat(filepath.Join(b.fx.tree, filepath.FromSlash(p)))
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	peak := g.sampleMem(stop)
	start := time.Now()
	err = fetchConcurrently(ctx, http.DefaultClient, "http://"+g.listen+p, 8, fi.Size())
	cold := time.Since(start)
	if err == nil {
		client := newClient(clientOpts{proxy: "http://" + g.listen, roots: g.roots(), keepAlive: true, workers: 8})
		start = time.Now()
		err = fetchConcurrently(ctx, client, "https://proxy.golang.org"+p, 8, fi.Size())
	}
	warm := time.Since(start)
	close(stop)
	pk := <-peak
	if err != nil {
		return err
	}
	m, _ := g.mem()
	met := m.HWM <= 150<<10
	b.add(
		"4a",
		"peak RSS, 8 clients × 300 MiB zip (cold, then warm)",
		fmt.Sprintf(
			"VmHWM %s; peaks anon %s, file %s (%.1fs cold, %.1fs warm)",
			mib(m.HWM),
			mib(pk.Anon),
			mib(pk.File),
			cold.Seconds(),
			warm.Seconds(),
		),
		"≤ 150 MiB",
		&met,
	)
	return nil
}

// roots is a pool holding the gate's CA.
func (g *gateProc) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	if pem, err := os.ReadFile(filepath.Join(g.dataDir, "ca.pem")); err == nil {
		pool.AppendCertsFromPEM(pem)
	}
	return pool
}

// fetchConcurrently GETs url from n goroutines at once and checks that
// each gets size bytes, all with the same SHA-256.
func fetchConcurrently(ctx context.Context, client *http.Client, url string, n int, size int64) error {
	var wg sync.WaitGroup
	sums := make([][32]byte, n)
	errs := make([]error, n)
	startGate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-startGate
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			switch {
			case err != nil:
				errs[i] = err
			case resp.StatusCode != http.StatusOK || got != size:
				errs[i] = fmt.Errorf("GET %s: %s, %d bytes, want %d", url, resp.Status, got, size)
			}
			h.Sum(sums[i][:0])
		})
	}
	close(startGate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return err
		}
		if sums[i] != sums[0] {
			return fmt.Errorf("GET %s: clients got different bytes", url)
		}
	}
	return nil
}

// stampede measures scenario 5: 50 concurrent cold requests for one zip
// (the workload's largest) and the number of upstream fetches they cause.
func (b *runner) stampede(ctx context.Context) error {
	mods, err := b.workloadModules()
	if err != nil {
		return err
	}
	var p string
	var size int64
	for _, m := range mods {
		zp := "/" + mustEscape(m.Path) + "/@v/" + mustEscapeVersion(m.Version) + ".zip"
		if fi, err := os.Stat(filepath.Join(b.fx.tree, filepath.FromSlash(zp))); err == nil && fi.Size() > size {
			p, size = zp, fi.Size()
		}
	}
	g, err := startGate(ctx, b.bin, b.dir("stampede"), b.up.gateArgs())
	if err != nil {
		return err
	}
	defer g.stop()
	before := b.up.Count(p)
	client := newClient(clientOpts{keepAlive: true, workers: 50})
	if err := fetchConcurrently(ctx, client, "http://"+g.listen+p, 50, size); err != nil {
		return err
	}
	n := b.up.Count(p) - before
	met := n == 1
	b.add(
		"5",
		"upstream fetches for 50 concurrent cold requests of one zip",
		fmt.Sprintf("%d (%s, %.1f MiB)", n, strings.TrimPrefix(p, "/"), float64(size)/(1<<20)),
		"exactly 1",
		&met,
	)
	return nil
}

// workloadModules returns the workload's required modules that have a zip.
func (b *runner) workloadModules() ([]module.Version, error) {
	data, err := os.ReadFile(filepath.Join(b.fx.workload, "go.mod"))
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		return nil, err
	}
	var out []module.Version
	for _, r := range f.Require {
		if _, ok := b.up.Sums(r.Mod); ok {
			out = append(out, r.Mod)
		}
	}
	return out, nil
}

func mustEscape(p string) string {
	e, err := module.EscapePath(p)
	if err != nil {
		panic(err)
	}
	return e
}

func mustEscapeVersion(v string) string {
	e, err := module.EscapeVersion(v)
	if err != nil {
		panic(err)
	}
	return e
}

// smallPaths returns the paths of the cached small objects of scenario 6:
// the workload's .mod and .info files and the level-0 hash tiles of the
// checksum database.
func (b *runner) smallPaths() (mods, tiles []string, err error) {
	ms, err := b.workloadModules()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		base := "/" + mustEscape(m.Path) + "/@v/" + mustEscapeVersion(m.Version)
		mods = append(mods, base+".mod", base+".info")
	}
	n := b.up.TreeSize()
	for i := int64(0); i*256 < n; i++ {
		t := tlog.Tile{H: 8, L: 0, N: i, W: int(min(256, n-i*256))}
		tiles = append(tiles, "/"+t.Path())
	}
	return mods, tiles, nil
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printTable writes the table of figures.
func (b *runner) printTable(w io.Writer) {
	key := func(id string) string { // "4b" → " 4b", "10" → "10 "
		n := strings.TrimRight(id, "abc")
		return fmt.Sprintf("%2s%s", n, strings.TrimPrefix(id, n))
	}
	slices.SortStableFunc(b.rows, func(x, y row) int { return strings.Compare(key(x.id), key(y.id)) })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tmeasure\tresult\ttarget\tmet")
	for _, r := range b.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.id, r.what, r.value, r.target, r.met)
	}
	tw.Flush()
}
