package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modgate/modgate/internal/modfixture"
	"github.com/modgate/modgate/internal/pgtest"
)

// clusterScenario is the number of the cluster's scenario (issue 12).
const clusterScenario = 12

// The synthetic module of scenario 12b: a zip of about 48 MiB that one gate
// of a cluster fetches and another serves from the shared level.
const (
	clusterZipPath    = "example.com/modgate-bench/cluster48"
	clusterZipVersion = "v1.0.0"
	clusterZipSize    = 48 << 20
)

// clusterKeyFiles are the files every gate of a cluster shares with its
// first gate (as cmd/modgate's cluster harness copies them).
var clusterKeyFiles = []string{"ca.pem", "ca-key.pem", "note.key", "note.pub", "admin.token"}

// ensureClusterZip writes the synthetic module of scenario 12b into the
// fixture tree once; the local upstream hashes it when it starts.
func ensureClusterZip(fx *fixture) error {
	zip := filepath.Join(fx.tree, filepath.FromSlash(clusterZipPath), "@v", clusterZipVersion+".zip")
	if _, err := os.Stat(zip); err == nil {
		return nil
	}
	return modfixture.WriteSynthetic(fx.tree, clusterZipPath, clusterZipVersion, clusterZipSize)
}

// clusterRun is a throwaway PostgreSQL and the gates of scenario 12.
type clusterRun struct {
	b     *runner
	dbURL string
	first string // data directory of the first gate, whose keys the others copy
	gates []*gateProc
}

// gate starts one more gate of the cluster.
func (c *clusterRun) gate(ctx context.Context, name string) (*gateProc, error) {
	dir := c.b.dir(name)
	if c.first != "" {
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o700); err != nil {
			return nil, err
		}
		for _, f := range clusterKeyFiles {
			b, err := os.ReadFile(filepath.Join(c.first, f))
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(data, f), b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	g, err := startGate(ctx, c.b.bin, dir, c.b.up.gateArgs(), "--cluster-db", c.dbURL)
	if err != nil {
		return nil, err
	}
	if c.first == "" {
		c.first = g.dataDir
	}
	c.gates = append(c.gates, g)
	return g, nil
}

func (c *clusterRun) stop() {
	for _, g := range c.gates {
		g.stop()
	}
}

// cluster measures scenario 12 (issue 12): gates sharing one PostgreSQL.
// 12c first, while the cluster is cold; then 12b, a 48 MiB zip that another
// gate fetched; then 12a, warm downloads from a cluster gate's first level
// against a single gate, in the same run.
func (b *runner) cluster(ctx context.Context) error {
	pg, err := pgtest.Launch()
	if err != nil {
		return fmt.Errorf("scenario 12 needs PostgreSQL: %w", err)
	}
	defer pg.Close()
	c := &clusterRun{b: b, dbURL: pg.URL("postgres")}
	defer c.stop()
	for i := range 3 {
		if _, err := c.gate(ctx, fmt.Sprintf("cluster%d", i+1)); err != nil {
			return err
		}
	}
	if err := b.clusterStampede(ctx, c.gates); err != nil {
		return err
	}
	if err := b.clusterBigZip(ctx, c); err != nil {
		return err
	}
	return b.clusterWarm(ctx, c.gates[0])
}

// clusterStampede is 12c: each of the gates gets 50 concurrent clients,
// each of which asks for the same 20 cold zips (in its own order). The
// upstream must see one request per zip, and no client a 5xx.
func (b *runner) clusterStampede(ctx context.Context, gates []*gateProc) error {
	mods, err := b.workloadModules()
	if err != nil {
		return err
	}
	// The 20 smallest zips: the scenario is about coordination, and 3,000
	// answers of large zips would measure the machine's bandwidth instead.
	type zipFile struct {
		path string
		size int64
	}
	var zips []zipFile
	for _, m := range mods {
		zp := "/" + mustEscape(m.Path) + "/@v/" + mustEscapeVersion(m.Version) + ".zip"
		if fi, err := os.Stat(filepath.Join(b.fx.tree, filepath.FromSlash(zp))); err == nil {
			zips = append(zips, zipFile{zp, fi.Size()})
		}
	}
	if len(zips) < 20 {
		return fmt.Errorf("the workload has %d zips, scenario 12c needs 20", len(zips))
	}
	slices.SortFunc(zips, func(a, b zipFile) int { return cmp.Compare(a.size, b.size) })
	var paths []string
	var total int64
	for _, z := range zips[:20] {
		paths = append(paths, z.path)
		total += z.size
	}
	before := make([]int, len(paths))
	for i, p := range paths {
		before[i] = b.up.Count(p)
	}
	const workers = 50
	var (
		mu       sync.Mutex
		status5  int
		failures []error
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	begin := time.Now()
	for _, g := range gates {
		client := newClient(clientOpts{keepAlive: true, workers: workers})
		for w := range workers {
			wg.Go(func() {
				<-start
				for k := range paths {
					p := paths[(w+k)%len(paths)]
					code, err := getDiscard(ctx, client, "http://"+g.listen+p)
					mu.Lock()
					if code >= 500 {
						status5++
					}
					if err != nil || code != http.StatusOK {
						failures = append(failures, fmt.Errorf("%s: %d %v", p, code, err))
					}
					mu.Unlock()
				}
			})
		}
	}
	close(start)
	wg.Wait()
	took := time.Since(begin)
	extra := 0
	for i, p := range paths {
		if n := b.up.Count(p) - before[i]; n != 1 {
			extra += n - 1
			b.logf("12c: %s fetched %d times from the upstream", p, n)
		}
	}
	for _, err := range failures[:min(len(failures), 5)] {
		b.logf("12c: %v", err)
	}
	met := extra == 0 && status5 == 0 && len(failures) == 0
	b.add("12c",
		fmt.Sprintf("3 gates × %d concurrent cold clients, same 20 zips: upstream fetches per zip, 5xx", workers),
		fmt.Sprintf("%d extra fetches, %d answers 5xx, %d failed of %d (%.1fs; zips of %.1f MiB in all)", extra,
			status5, len(failures), len(gates)*workers*len(paths), took.Seconds(), float64(total)/(1<<20)),
		"exactly 1 per zip, no 5xx", &met)
	return nil
}

// getDiscard GETs url, reads the body to its end and returns the status.
func getDiscard(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// timedGet GETs url, checks the body's SHA-256 and returns the time to
// the body's last byte.
func timedGet(ctx context.Context, url string, want [sha256.Size]byte) (time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return 0, err
	}
	d := time.Since(start)
	if resp.StatusCode != http.StatusOK || [sha256.Size]byte(h.Sum(nil)) != want {
		return 0, fmt.Errorf("GET %s: %s, or other bytes than the upstream's", url, resp.Status)
	}
	return d, nil
}

// clusterBigZip is 12b: the 48 MiB zip, fetched from the upstream by the
// second gate, reaches a client of a fresh gate (from the second level)
// in at most 3× the time of the same gate's first-level hit that follows,
// with no upstream request. One fresh gate per run.
func (b *runner) clusterBigZip(ctx context.Context, c *clusterRun) error {
	p := "/" + mustEscape(clusterZipPath) + "/@v/" + clusterZipVersion + ".zip"
	data, err := os.ReadFile(filepath.Join(b.fx.tree, filepath.FromSlash(p)))
	if err != nil {
		return err
	}
	want := sha256.Sum256(data)
	if _, err := timedGet(ctx, "http://"+c.gates[1].listen+p, want); err != nil {
		return err
	}
	// That gate shares the zip after its answer: time the reads once it is
	// in the shared level (until then a fresh gate waits for its lease).
	key := "zip/" + mustEscape(clusterZipPath) + "/@v/" + clusterZipVersion
	if err := awaitShared(ctx, c.dbURL, key); err != nil {
		return err
	}
	fetched := b.up.Count(p)
	var second, first, rs []float64
	for i := range b.o.runs {
		g, err := c.gate(ctx, fmt.Sprintf("cluster-fresh%d", i+1))
		if err != nil {
			return err
		}
		// The gate's CPU time for each request, which a loaded machine
		// changes less than the wall time.
		var profiled <-chan error
		if f := b.profileFile("cluster-second-level"); f != "" && i == 0 {
			profiled = g.profile(3*time.Second, f) // the read from the second level and the store after it
		}
		c0 := g.cpu()
		s, err := timedGet(ctx, "http://"+g.listen+p, want)
		if err != nil {
			return err
		}
		if profiled != nil {
			if err := <-profiled; err != nil {
				return err
			}
		}
		// The gate stores the zip in its first level after the answer:
		// measure the hit once that is done, on a new connection, so that
		// it times a hit and not the store. The first CPU figure includes
		// that store.
		stored, err := awaitZipStored(ctx, g, int64(len(data)))
		if err != nil {
			return err
		}
		c1 := g.cpu()
		http.DefaultClient.CloseIdleConnections()
		f, err := timedGet(ctx, "http://"+g.listen+p, want)
		if err != nil {
			return err
		}
		c2 := g.cpu()
		second, first = append(second, s.Seconds()), append(first, f.Seconds())
		rs = append(rs, s.Seconds()/f.Seconds())
		b.logf("12b run %d: from the second level %.3fs (stored in the first level %v later; gate CPU %v with the store), "+
			"first-level hit %.3fs (gate CPU %v)", i+1, s.Seconds(), stored.Round(time.Millisecond), c1-c0,
			f.Seconds(), c2-c1)
		g.stop()
		c.gates = slices.DeleteFunc(c.gates, func(x *gateProc) bool { return x == g })
	}
	extra := b.up.Count(p) - fetched
	r := median(rs)
	met := r <= 3 && extra == 0
	b.add("12b", "48 MiB zip another gate fetched ÷ first-level hit (GOPROXY endpoint)",
		fmt.Sprintf("%.2f (%.3fs ÷ %.3fs), %d upstream requests", r, median(second), median(first), extra),
		"≤ 3, no upstream request", &met)
	return nil
}

// awaitShared waits until the cluster's shared level at dbURL holds an
// object under key.
func awaitShared(ctx context.Context, dbURL, key string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM modgate_objects WHERE key = $1", key).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s is not in the shared level after 60s", key)
}

// awaitZipStored waits until g's cache holds at least size bytes of zips
// (its modgate_cache_bytes{kind="zip"}), and returns how long that took.
func awaitZipStored(ctx context.Context, g *gateProc, size int64) (time.Duration, error) {
	start := time.Now()
	for deadline := start.Add(30 * time.Second); time.Now().Before(deadline); {
		resp, err := http.Get("http://" + g.admin + "/metrics")
		if err != nil {
			return 0, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for line := range strings.SplitSeq(string(body), "\n") {
			v, ok := strings.CutPrefix(line, `modgate_cache_bytes{kind="zip"} `)
			if n, err := strconv.ParseFloat(v, 64); ok && err == nil && int64(n) >= size {
				return time.Since(start), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("gate %s did not store the %d-byte zip in its cache within 30s", g.listen, size)
}

// clusterWarm is 12a: warm go mod download of the workload through the
// GOPROXY endpoint of a cluster gate and of a single gate (no database),
// both filled first, in paired runs.
func (b *runner) clusterWarm(ctx context.Context, cg *gateProc) error {
	single, err := startGate(ctx, b.bin, b.dir("cluster-single"), b.up.gateArgs())
	if err != nil {
		return err
	}
	defer single.stop()
	modes := []struct {
		name string
		env  []string
	}{{"single", single.clientEnv(false)}, {"cluster", cg.clientEnv(false)}}
	for _, m := range modes {
		if _, err := b.env.download(ctx, b.fx, m.env); err != nil {
			return err
		}
	}
	times := map[string][]float64{}
	for i := range b.o.runs {
		for j := range modes {
			m := modes[(i+j)%len(modes)]
			d, err := b.env.download(ctx, b.fx, m.env)
			if err != nil {
				return err
			}
			times[m.name] = append(times[m.name], d.Seconds())
		}
		b.logf("12a run %d: single %.2fs, cluster %.2fs", i+1, last(times["single"]), last(times["cluster"]))
	}
	r := median(ratios(times["cluster"], times["single"]))
	met := r <= 1.05
	b.add("12a", "warm go mod download from the first level, --cluster-db gate ÷ single gate",
		fmt.Sprintf("%.2f (%.2fs ÷ %.2fs)", r, median(times["cluster"]), median(times["single"])), "≤ 1.05", &met)
	return nil
}
